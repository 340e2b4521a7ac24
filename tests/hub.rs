//! Many publishers in one `/dist` (issue 10), end to end with real processes: `distfs serve`
//! holds every tree (added with `distfs add --store`) and every record (PUT through its
//! routing API, or planted in its record directory when the serve would refuse it), and
//! `distfs mount` shows the main root's projects, configured projects (`--project`) and hub
//! entries (`projects.json`) as one `/dist`.
//!
//! - two authors with two keys and a hub: a republish by one moves only its `latest`; the
//!   other's sequence, TTL, root and files stay (through `distfs status --json` and reads);
//! - forged, expired and wrong-key hub entries each fail only their own project (EIO with
//!   the reason in `distfs status` and the log) while the good entry reads normally;
//! - a 1,000-entry hub lists (and stats) without resolving any entry; resolving one asks the
//!   origin for exactly one record and only blocks of that project's tree.
//!
//! Needs /dev/fuse and fusermount3 (fails, never skips).

#[path = "support/mod.rs"]
mod support;

#[allow(dead_code)]
#[path = "mount/harness.rs"]
mod harness;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, SystemTime};

use distfs::name::Keypair;
use harness::{http_get_json, poll, Mount, MountOpts, Serve};
use serde_json::Value;
use support::ipns::{put_record, record, record_until};
use support::{det_bytes, distfs_add, tempdir, write_bytes, write_det};

/// Adds the tree at `dir` to the serve's store; its CID.
fn add(dir: &Path, store: &Path) -> String {
    distfs_add(
        dir,
        &[
            "--cid-version",
            "1",
            "--store",
            &store.display().to_string(),
        ],
    )
    .unwrap()
}

/// Writes `files` (path under `dir`, seed, length) and adds the tree; its CID.
fn tree(dir: &Path, store: &Path, files: &[(&str, &str, usize)]) -> String {
    for (rel, seed, len) in files {
        write_det(&dir.join(rel), seed, *len);
    }
    add(dir, store)
}

fn ls(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn link(p: &Path) -> String {
    std::fs::read_link(p)
        .map(|t| t.display().to_string())
        .unwrap_or_default()
}

fn status(cache: &Path) -> Value {
    let out = harness::run_ok(
        support::distfs_bin().to_str().unwrap(),
        &[
            "status",
            "--json",
            "--cache-dir",
            &cache.display().to_string(),
        ],
    );
    serde_json::from_slice(&out).expect("status --json prints JSON")
}

fn project<'a>(st: &'a Value, name: &str) -> &'a Value {
    st["projects"]
        .as_array()
        .expect("projects[]")
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no project {name} in {st:#}"))
}

/// Record requests the serve has answered (gateway and routing APIs).
fn record_requests(serve: &Serve) -> u64 {
    let stats = http_get_json(&serve.url, "/debug/stats");
    let n = |k: &str| stats["by_kind"][k].as_u64().unwrap_or(0);
    n("ipns-record") + n("routing-ipns")
}

/// The CIDs the serve has answered block requests for.
fn served_cids(serve: &Serve) -> BTreeSet<String> {
    let stats = http_get_json(&serve.url, "/debug/stats");
    stats["by_cid"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

/// Writes `projects.json` into `dir` from (name, root, publisher) triples.
fn write_index(dir: &Path, entries: &[(&str, String, Option<String>)]) {
    let mut projects = serde_json::Map::new();
    for (name, root, publisher) in entries {
        let mut e = serde_json::Map::new();
        e.insert("root".into(), Value::String(root.clone()));
        if let Some(p) = publisher {
            e.insert("publisher".into(), Value::String(p.clone()));
        }
        projects.insert(name.to_string(), Value::Object(e));
    }
    let text = serde_json::json!({ "projects": projects }).to_string();
    write_bytes(&dir.join("projects.json"), text.as_bytes());
}

#[test]
fn two_authors_and_a_hub_each_move_on_their_own() {
    let tmp = tempdir();
    let (store, cache) = (tmp.path().join("store"), tmp.path().join("cache"));
    let serve = Serve::start(&store);
    let (alpha_key, beta_key, hub_key) = (
        Keypair::generate(),
        Keypair::generate(),
        Keypair::generate(),
    );
    let (a, b, h) = (
        alpha_key.name().to_string(),
        beta_key.name().to_string(),
        hub_key.name().to_string(),
    );
    let put =
        |k: &str, rec: Vec<u8>| assert_eq!(put_record(&serve.url, k, &rec, tmp.path()), "200");

    // alpha: configured on the command line, republished often (TTL 1 s).
    let alpha1 = tree(
        &tmp.path().join("alpha1"),
        &store,
        &[("1.0.0/app.bin", "alpha-1", 300_000)],
    );
    put(&a, record(&alpha_key, &alpha1, 1, Duration::from_secs(1)));
    // beta: a hub entry with its publisher pinned (TTL 40 s).
    let beta1 = tree(
        &tmp.path().join("beta1"),
        &store,
        &[("0.9.0/tool.bin", "beta-1", 200_000)],
    );
    put(&b, record(&beta_key, &beta1, 1, Duration::from_secs(40)));
    // The hub: its own project gamma, and an index naming beta and a gamma of its own
    // (which the main root's gamma hides).
    let hub_dir = tmp.path().join("hub");
    write_det(&hub_dir.join("gamma/1.0/g.txt"), "gamma", 1000);
    write_index(
        &hub_dir,
        &[
            ("beta", format!("/ipns/{b}"), Some(b.clone())),
            ("gamma", format!("/ipns/{b}"), None),
        ],
    );
    let hub = add(&hub_dir, &store);
    put(&h, record(&hub_key, &hub, 1, Duration::from_secs(40)));

    let root = format!("/ipns/{h}");
    let alpha_arg = format!("alpha=/ipns/{a}");
    let mnt = Mount::try_start(
        &tmp.path().join("mnt"),
        &MountOpts {
            root: &root,
            gateways: &[&serve.url],
            cache: &cache,
            extra: &["--project", &alpha_arg, "--min-ttl", "1", "--max-ttl", "60"],
        },
    )
    .unwrap();
    assert_eq!(ls(&mnt.dir), ["alpha", "beta", "gamma", "projects.json"]);
    assert!(
        std::fs::read(mnt.path("alpha/latest/app.bin")).unwrap() == det_bytes("alpha-1", 300_000)
    );
    assert!(
        std::fs::read(mnt.path("beta/latest/tool.bin")).unwrap() == det_bytes("beta-1", 200_000)
    );
    assert!(std::fs::read(mnt.path("gamma/1.0/g.txt")).unwrap() == det_bytes("gamma", 1000));
    assert_eq!(ls(&mnt.path("beta")), ["0.9.0", "latest"]);

    let st = status(&cache);
    let (alpha, beta) = (project(&st, "alpha"), project(&st, "beta"));
    assert_eq!(alpha["origin"], "configured", "{st:#}");
    assert_eq!(alpha["state"], "ready", "{st:#}");
    assert_eq!(alpha["sequence"], 1);
    assert_eq!(alpha["ttl_secs"], 1);
    assert_eq!(beta["origin"], "hub");
    assert_eq!(beta["state"], "ready", "{st:#}");
    assert_eq!(beta["sequence"], 1);
    assert_eq!(beta["ttl_secs"], 40);
    assert_eq!(beta["cid"], beta1.as_str());
    assert_eq!(beta["publisher"], b.as_str());
    let clashes = st["clashes"].as_array().unwrap();
    assert_eq!(clashes.len(), 1, "{st:#}");
    assert_eq!(clashes[0]["name"], "gamma");
    assert_eq!(clashes[0]["shown"], "main-root");
    assert_eq!(clashes[0]["hidden"], serde_json::json!(["hub"]));
    assert_eq!(project(&st, "gamma")["shown"], false);

    // alpha publishes 2.0.0 (sequence 2): only alpha's latest moves.
    let alpha2_dir = tmp.path().join("alpha2");
    let alpha2 = tree(
        &alpha2_dir,
        &store,
        &[
            ("1.0.0/app.bin", "alpha-1", 300_000),
            ("2.0.0/app.bin", "alpha-2", 300_000),
        ],
    );
    put(&a, record(&alpha_key, &alpha2, 2, Duration::from_secs(1)));
    poll(
        "alpha's latest to move to 2.0.0",
        Duration::from_secs(30),
        || (link(&mnt.path("alpha/latest")) == "2.0.0").then_some(()),
    );
    assert!(
        std::fs::read(mnt.path("alpha/latest/app.bin")).unwrap() == det_bytes("alpha-2", 300_000)
    );
    assert_eq!(ls(&mnt.path("alpha")), ["1.0.0", "2.0.0", "latest"]);

    let after = status(&cache);
    let (alpha, beta_after) = (project(&after, "alpha"), project(&after, "beta"));
    assert_eq!(alpha["sequence"], 2, "{after:#}");
    assert_eq!(alpha["cid"], alpha2.as_str());
    for field in ["sequence", "ttl_secs", "cid", "source", "state", "failures"] {
        assert_eq!(
            beta_after[field], beta[field],
            "beta's {field} moved: {after:#}"
        );
    }
    assert_eq!(link(&mnt.path("beta/latest")), "0.9.0");
    assert_eq!(ls(&mnt.path("beta")), ["0.9.0", "latest"]);
    assert!(
        std::fs::read(mnt.path("beta/latest/tool.bin")).unwrap() == det_bytes("beta-1", 200_000)
    );
    assert_eq!(
        after["root"]["cid"],
        hub.as_str(),
        "the hub root did not move"
    );
}

#[test]
fn bad_hub_entries_fail_alone() {
    let tmp = tempdir();
    let (store, cache) = (tmp.path().join("store"), tmp.path().join("cache"));
    let serve = Serve::start(&store);
    let put =
        |k: &str, rec: Vec<u8>| assert_eq!(put_record(&serve.url, k, &rec, tmp.path()), "200");
    let plant = |k: &str, rec: Vec<u8>| {
        let dir = store.join("ipns");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{k}.ipns-record")), rec).unwrap();
    };
    let ttl = Duration::from_secs(40);
    let good_tree = tree(
        &tmp.path().join("good"),
        &store,
        &[("1.0/f.bin", "good", 100_000)],
    );
    let [good, forged, forger, expired, other, hubk] = std::array::from_fn(|_| Keypair::generate());
    let g = good.name().to_string();
    put(&g, record(&good, &good_tree, 1, ttl));
    // Forged: a record for forged's name signed by another key (planted: serve refuses it).
    let f = forged.name().to_string();
    plant(&f, record(&forger, &good_tree, 5, ttl));
    // Expired: signed right, valid until an hour ago (planted: serve refuses it).
    let e = expired.name().to_string();
    let hour_ago = SystemTime::now() - Duration::from_secs(3600);
    plant(&e, record_until(&expired, &good_tree, 1, hour_ago, ttl));
    // Wrong key: a valid record of another key, where the index pins good's key.
    let o = other.name().to_string();
    put(&o, record(&other, &good_tree, 1, ttl));

    let hub_dir = tmp.path().join("hub");
    write_index(
        &hub_dir,
        &[
            ("good", format!("/ipns/{g}"), Some(g.clone())),
            ("forged", format!("/ipns/{f}"), None),
            ("expired", format!("/ipns/{e}"), None),
            ("wrongkey", format!("/ipns/{o}"), Some(g.clone())),
            ("..", format!("/ipns/{g}"), None),
            ("ctl\u{1}", format!("/ipns/{g}"), None),
        ],
    );
    let hub = add(&hub_dir, &store);
    let h = hubk.name().to_string();
    put(&h, record(&hubk, &hub, 1, ttl));

    let root = format!("/ipns/{h}");
    let mnt = Mount::try_start(
        &tmp.path().join("mnt"),
        &MountOpts {
            root: &root,
            gateways: &[&serve.url],
            cache: &cache,
            extra: &["--min-ttl", "1", "--max-ttl", "60"],
        },
    )
    .unwrap();
    assert_eq!(
        ls(&mnt.dir),
        ["expired", "forged", "good", "projects.json", "wrongkey"]
    );
    for bad in ["forged", "expired", "wrongkey"] {
        let listed =
            std::fs::read_dir(mnt.path(bad)).and_then(|rd| rd.collect::<Result<Vec<_>, _>>());
        let err = listed.expect_err(bad);
        assert_eq!(err.raw_os_error(), Some(libc::EIO), "{bad}: {err}");
        let err = std::fs::metadata(mnt.path(&format!("{bad}/latest"))).expect_err(bad);
        assert_eq!(err.raw_os_error(), Some(libc::EIO), "{bad}: {err}");
        // Every other project still reads.
        assert!(
            std::fs::read(mnt.path("good/latest/f.bin")).unwrap() == det_bytes("good", 100_000)
        );
    }
    let st = status(&cache);
    let reason = |name: &str| {
        let p = project(&st, name);
        assert_eq!(p["state"], "failed", "{name}: {st:#}");
        p["error"].as_str().unwrap_or_default().to_string()
    };
    assert!(
        reason("forged").contains("refused record"),
        "{}",
        reason("forged")
    );
    assert!(
        reason("expired").contains("expired"),
        "{}",
        reason("expired")
    );
    assert!(reason("wrongkey").contains(&g), "{}", reason("wrongkey"));
    assert_eq!(project(&st, "good")["state"], "ready");
    let rejected: Vec<&str> = st["hub_rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r[0].as_str().unwrap())
        .collect();
    assert_eq!(rejected, ["..", "ctl\u{1}"], "{st:#}");
    let log = mnt.log_text();
    for name in ["forged", "expired", "wrongkey", "\"..\""] {
        assert!(log.contains(name), "log lacks {name}: {log}");
    }
}

#[test]
fn a_thousand_entry_hub_lists_without_resolving() {
    const N: usize = 1000;
    let tmp = tempdir();
    let (store, cache) = (tmp.path().join("store"), tmp.path().join("cache"));
    let serve = Serve::start(&store);
    let ttl = Duration::from_secs(40);
    let keys: Vec<Keypair> = (0..N).map(|_| Keypair::generate()).collect();
    let names: Vec<String> = keys.iter().map(|k| k.name().to_string()).collect();
    // Only p0500 has a tree and a record: resolving any other would fail loudly.
    let one_dir = tmp.path().join("one");
    let one = tree(&one_dir, &store, &[("1.0.0/a.bin", "one", 5000)]);
    let one_version = add(&one_dir.join("1.0.0"), &store);
    let one_file = add(&one_dir.join("1.0.0/a.bin"), &store);
    assert_eq!(
        put_record(
            &serve.url,
            &names[500],
            &record(&keys[500], &one, 1, ttl),
            tmp.path()
        ),
        "200"
    );
    let hub_dir = tmp.path().join("hub");
    let entries: Vec<(String, String, Option<String>)> = names
        .iter()
        .enumerate()
        .map(|(i, k)| (format!("p{i:04}"), format!("/ipns/{k}"), None))
        .collect();
    let refs: Vec<(&str, String, Option<String>)> = entries
        .iter()
        .map(|(n, r, p)| (n.as_str(), r.clone(), p.clone()))
        .collect();
    write_index(&hub_dir, &refs);
    let hub = add(&hub_dir, &store);
    let hubk = Keypair::generate();
    let h = hubk.name().to_string();
    assert_eq!(
        put_record(&serve.url, &h, &record(&hubk, &hub, 1, ttl), tmp.path()),
        "200"
    );

    let root = format!("/ipns/{h}");
    let mnt = Mount::try_start(
        &tmp.path().join("mnt"),
        &MountOpts {
            root: &root,
            gateways: &[&serve.url],
            cache: &cache,
            extra: &["--min-ttl", "1", "--max-ttl", "60"],
        },
    )
    .unwrap();
    let records_before = record_requests(&serve);
    let listed = ls(&mnt.dir);
    assert_eq!(listed.len(), N + 1);
    assert_eq!(listed[0], "p0000");
    assert_eq!(listed[N], "projects.json");
    // `ls -l` too: each entry is looked up and stat'ed, still without resolving.
    for name in &listed[..N] {
        let meta = std::fs::symlink_metadata(mnt.dir.join(name)).unwrap();
        assert!(meta.is_dir(), "{name}");
    }
    assert_eq!(
        record_requests(&serve),
        records_before,
        "listing resolved entries"
    );
    let st = status(&cache);
    let projects = st["projects"].as_array().unwrap();
    assert_eq!(projects.len(), N);
    assert!(
        projects.iter().all(|p| p["state"] == "unresolved"),
        "{st:#}"
    );

    let cids_before = served_cids(&serve);
    assert_eq!(ls(&mnt.path("p0500")), ["1.0.0", "latest"]);
    assert_eq!(
        record_requests(&serve),
        records_before + 1,
        "resolving one entry asks for exactly its record"
    );
    let fetched: BTreeSet<String> = served_cids(&serve)
        .difference(&cids_before)
        .cloned()
        .collect();
    assert!(
        fetched.contains(&one),
        "the project root was not fetched: {fetched:?}"
    );
    let tree_cids: BTreeSet<String> = [one.clone(), one_version, one_file].into();
    assert!(
        fetched.is_subset(&tree_cids),
        "fetched beyond the project's tree: {fetched:?}"
    );
    assert!(std::fs::read(mnt.path("p0500/latest/a.bin")).unwrap() == det_bytes("one", 5000));
    let st = status(&cache);
    let resolved: Vec<&str> = st["projects"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["state"] != "unresolved")
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(resolved, ["p0500"], "{st:#}");
}

/// Runs `distfs ARGS...`; its stdout, or a panic with its stderr.
fn distfs_ok(args: &[&str]) -> String {
    let out = harness::run_ok(support::distfs_bin().to_str().unwrap(), args);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn an_author_publishes_alone_and_a_curator_lists_it() {
    let tmp = tempdir();
    let p = |rel: &str| tmp.path().join(rel).display().to_string();
    let token = write_bytes(&tmp.path().join("token"), b"hub-test-token\n");
    let serve = Serve::start_with(
        &tmp.path().join("store"),
        &[
            std::ffi::OsStr::new("--upload-token-file"),
            token.as_os_str(),
        ],
        std::process::Stdio::null(),
    );
    let author = distfs_ok(&["key", "gen", &p("author.key")])
        .trim()
        .to_string();
    let curator = distfs_ok(&["key", "gen", &p("hub.key")]).trim().to_string();
    let target = [
        "--to",
        serve.url.as_str(),
        "--token-file",
        token.to_str().unwrap(),
        "--ttl",
        "1s",
    ];
    let publish = |version: &str, seed: &str| {
        let file = write_det(&tmp.path().join(version).join("hello.bin"), seed, 70_000);
        let mut args = vec!["publish", "--key"];
        let key = p("author.key");
        args.extend([
            key.as_str(),
            "--single",
            "--project",
            "hello",
            "--version",
            version,
        ]);
        args.extend(target);
        args.push(file.to_str().unwrap());
        distfs_ok(&args)
    };
    let said = publish("1.0.0", "hello-1");
    assert!(said.contains("sequence 0"), "{said}");

    // The curator lists the author's project, pinned to the author's key.
    let hub_key = p("hub.key");
    let root = format!("/ipns/{author}");
    let mut add = vec![
        "hub",
        "add",
        "hello",
        root.as_str(),
        "--publisher",
        author.as_str(),
    ];
    add.extend(["--key", hub_key.as_str()]);
    add.extend(target);
    let said = distfs_ok(&add);
    assert!(said.contains("entries 1"), "{said}");
    // A hostile name is refused before anything is published.
    let mut bad = vec!["hub", "add", "..", root.as_str(), "--key", hub_key.as_str()];
    bad.extend(target);
    let out = harness::run(support::distfs_bin().to_str().unwrap(), &bad);
    assert_eq!(out.status.code(), Some(1), "{out:?}");

    let mount_root = format!("/ipns/{curator}");
    let cache = tmp.path().join("cache");
    let mnt = Mount::try_start(
        &tmp.path().join("mnt"),
        &MountOpts {
            root: &mount_root,
            gateways: &[&serve.url],
            cache: &cache,
            extra: &["--min-ttl", "1", "--max-ttl", "2"],
        },
    )
    .unwrap();
    assert_eq!(ls(&mnt.dir), ["hello", "projects.json"]);
    assert_eq!(ls(&mnt.path("hello")), ["1.0.0", "latest", "versions"]);
    assert!(
        std::fs::read(mnt.path("hello/latest/hello.bin")).unwrap() == det_bytes("hello-1", 70_000)
    );
    assert!(mnt.path("hello/1.0.0/dist.json").exists());

    // The author publishes again on their own: the mount follows.
    publish("1.1.0", "hello-2");
    poll(
        "hello's latest to move to 1.1.0",
        Duration::from_secs(30),
        || (link(&mnt.path("hello/latest")) == "1.1.0").then_some(()),
    );
    assert!(
        std::fs::read(mnt.path("hello/latest/hello.bin")).unwrap() == det_bytes("hello-2", 70_000)
    );
    let st = status(&cache);
    assert_eq!(project(&st, "hello")["sequence"], 1, "{st:#}");

    // The curator drops the entry: it leaves /dist when the hub's record is next read.
    let mut remove = vec!["hub", "remove", "hello", "--key", hub_key.as_str()];
    remove.extend(target);
    let said = distfs_ok(&remove);
    assert!(
        said.contains("entries 0") && said.contains("sequence 1"),
        "{said}"
    );
    poll("hello to leave /dist", Duration::from_secs(30), || {
        (ls(&mnt.dir) == ["projects.json"]).then_some(())
    });
}
