//! `distfs generate-man DIR` (hidden): writes the distfs(1) manual page, rendered from the
//! clap definition of every subcommand, so the page lists exactly the flags the binary takes
//! and cannot go stale (tests/packaging.rs compares the committed `man/distfs.1` with a fresh
//! rendering). One page holds every subcommand, each as a section with its flags and help;
//! prose that the flags' help cannot carry lives in [`NOTES`] and the fixed sections below.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Arg, ArgAction, Command};

/// Arguments of `distfs generate-man`.
#[derive(clap::Args)]
pub struct GenerateManArgs {
    /// The directory to write distfs.1 into.
    pub dir: PathBuf,
}

/// Writes `DIR/distfs.1`.
pub fn run(args: GenerateManArgs, cmd: Command) -> anyhow::Result<()> {
    let path = args.dir.join("distfs.1");
    std::fs::write(&path, render(&cmd)).with_context(|| format!("writing {}", path.display()))
}

/// Escapes plain text for roff: backslashes, hyphens (as minus signs, so flags copy-paste
/// and never hyphenate), and a leading `.` or `'` that would read as a request.
fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.split('\n') {
        if !out.is_empty() {
            out.push('\n');
        }
        if line.starts_with('.') || line.starts_with('\'') {
            out.push_str("\\&");
        }
        for c in line.chars() {
            match c {
                '\\' => out.push_str("\\e"),
                '-' => out.push_str("\\-"),
                c => out.push(c),
            }
        }
    }
    out
}

/// Help text as roff paragraphs: blank lines start a new paragraph with `sep` (`.PP` or
/// `.IP`), single newlines are kept as breaks in the flow.
fn paragraphs(text: &str, sep: &str) -> String {
    text.trim()
        .split("\n\n")
        .map(|p| esc(p.trim()))
        .collect::<Vec<_>>()
        .join(&format!("\n{sep}\n"))
}

/// Whether `arg` is one to document (not hidden, not clap's own help/version).
fn shown(arg: &Arg) -> bool {
    !arg.is_hide_set() && !matches!(arg.get_id().as_str(), "help" | "version")
}

/// The value placeholder of an option, e.g. `URL`.
fn value_name(arg: &Arg) -> String {
    match arg.get_value_names() {
        Some(names) if !names.is_empty() => names
            .iter()
            .map(|n| n.as_str().to_string())
            .collect::<Vec<_>>()
            .join(" "),
        _ => arg.get_id().as_str().to_uppercase(),
    }
}

/// Whether an option takes a value (a plain flag does not).
fn takes_value(arg: &Arg) -> bool {
    !matches!(
        arg.get_action(),
        ArgAction::SetTrue | ArgAction::SetFalse | ArgAction::Count
    )
}

/// The `.TP` tag of one argument: `\fB\-s\fR, \fB\-\-chunker\fR \fISPEC\fR`.
fn tag(arg: &Arg) -> String {
    if arg.is_positional() {
        return format!("\\fI{}\\fR", esc(&value_name(arg)));
    }
    let mut names = Vec::new();
    if let Some(s) = arg.get_short() {
        names.push(format!("\\fB\\-{}\\fR", esc(&s.to_string())));
    }
    if let Some(l) = arg.get_long() {
        names.push(format!("\\fB\\-\\-{}\\fR", esc(l)));
    }
    let mut t = names.join(", ");
    if takes_value(arg) {
        let optional = arg.get_num_args().is_some_and(|r| r.min_values() == 0);
        let v = esc(&value_name(arg));
        if optional {
            let _ = write!(t, "[=\\fI{v}\\fR]");
        } else {
            let _ = write!(t, " \\fI{v}\\fR");
        }
    }
    t
}

/// The body of one argument's `.TP` item: its help, default and possible values.
fn describe(arg: &Arg) -> String {
    let help = arg
        .get_long_help()
        .or(arg.get_help())
        .map(|h| h.to_string())
        .unwrap_or_default();
    let mut body = paragraphs(&help, ".IP");
    let defaults: Vec<String> = arg
        .get_default_values()
        .iter()
        .map(|v| v.to_string_lossy().into_owned())
        .collect();
    if !defaults.is_empty() && takes_value(arg) {
        let _ = write!(body, " [default: {}]", esc(&defaults.join(", ")));
    }
    let values: Vec<String> = arg
        .get_possible_values()
        .iter()
        .filter(|v| !v.is_hide_set())
        .map(|v| v.get_name().to_string())
        .collect();
    if !values.is_empty() && takes_value(arg) {
        let _ = write!(body, " [possible values: {}]", esc(&values.join(", ")));
    }
    body
}

/// `distfs key gen FILE [OPTIONS]` for a section heading or the synopsis.
fn usage(path: &str, cmd: &Command) -> String {
    let mut u = path.to_string();
    for arg in cmd
        .get_arguments()
        .filter(|a| a.is_positional() && shown(a))
    {
        let name = value_name(arg);
        let many = matches!(arg.get_action(), ArgAction::Append);
        let one = if many { format!("{name}...") } else { name };
        if arg.is_required_set() {
            let _ = write!(u, " {one}");
        } else {
            let _ = write!(u, " [{one}]");
        }
    }
    if cmd.get_arguments().any(|a| !a.is_positional() && shown(a)) {
        u.push_str(" [OPTIONS]");
    }
    u
}

/// Every documented leaf command under `cmd`, depth first in definition order, with its
/// full name (`distfs key gen`).
fn leaves<'a>(path: String, cmd: &'a Command, out: &mut Vec<(String, &'a Command)>) {
    let subs: Vec<&Command> = cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
        .collect();
    if subs.is_empty() {
        out.push((path, cmd));
        return;
    }
    for sub in subs {
        leaves(format!("{path} {}", sub.get_name()), sub, out);
    }
}

/// The whole distfs(1) page.
pub fn render(cmd: &Command) -> String {
    let mut commands = Vec::new();
    leaves("distfs".to_string(), cmd, &mut commands);
    let version = cmd.get_version().unwrap_or("");
    let about = cmd.get_about().map(|a| a.to_string()).unwrap_or_default();
    let about = about.trim_start_matches("distfs: ").trim_end_matches('.');

    let mut page = String::new();
    let _ = writeln!(
        page,
        ".\\\" Generated by `distfs generate-man man/` from the CLI definition: do not edit."
    );
    let _ = writeln!(
        page,
        ".TH DISTFS 1 \"\" \"distfs {version}\" \"User Commands\""
    );
    page.push_str(".nh\n");
    let _ = writeln!(page, ".SH NAME\ndistfs \\- {}", esc(about));
    page.push_str(".SH SYNOPSIS\n");
    for (i, (path, sub)) in commands.iter().enumerate() {
        if i > 0 {
            page.push_str(".br\n");
        }
        let _ = writeln!(page, ".B {}", esc(&usage(path, sub)));
    }
    page.push_str(DESCRIPTION);
    page.push_str(".SH COMMANDS\n");
    for (path, sub) in &commands {
        let _ = writeln!(page, ".SS \"{}\"", esc(&usage(path, sub)));
        let about = sub
            .get_long_about()
            .or(sub.get_about())
            .map(|a| a.to_string())
            .unwrap_or_default();
        let _ = writeln!(page, "{}", paragraphs(&about, ".PP"));
        let name = path.trim_start_matches("distfs ");
        if let Some((_, notes)) = NOTES.iter().find(|(n, _)| *n == name) {
            let _ = write!(page, ".PP\n{notes}");
        }
        for arg in sub.get_arguments().filter(|a| shown(a)) {
            let _ = writeln!(page, ".TP\n{}\n{}", tag(arg), describe(arg));
        }
    }
    page.push_str(TRAILER);
    page
}

/// The DESCRIPTION section, and the options every command takes.
const DESCRIPTION: &str = r##".SH DESCRIPTION
.B distfs
mounts a software distribution published on IPFS as a read-only directory tree:
.IR MOUNTPOINT / project / version /...
plus
.IR MOUNTPOINT / project /latest.
Blocks are fetched lazily from IPFS trustless HTTP gateways as files are read, verified
against their content identifiers (CIDs) before any byte reaches a reader, and cached on disk.
.PP
Every command takes
.BR \-h ", " \-\-help
(print its help) and
.B distfs
takes
.BR \-V ", " \-\-version .
SIZE values are a number with an optional K, M, G or T suffix (powers of 1024), e.g.
.BR 24M .
"##;

/// Prose for a command's section that its flags' help cannot carry, in roff, by command
/// name (`key gen` for a nested one).
const NOTES: &[(&str, &str)] = &[
    (
        "mount",
        r##"The mount is ready when
.B mountpoint \-q
.I MOUNTPOINT
succeeds; it lasts until
.BR "fusermount3 \-u " \fIMOUNTPOINT\fR,
.BR umount ,
SIGINT or SIGTERM, then the daemon exits 0. A dead mount left at
.I MOUNTPOINT
by a killed daemon ("Transport endpoint is not connected") is cleared first.
A name root is re-resolved at its record's TTL (clamped to
\fB\-\-min\-ttl\fR..\fB\-\-max\-ttl\fR) and on SIGHUP; the root never goes back to a lower
record sequence, also across restarts. Files open in an older version stay readable.
.PP
The mount is read-only (every write fails with EROFS) and uses the kernel's
.BR default_permissions :
files belong to the mounting user and their modes are enforced for everyone. With
.BR \-\-allow\-other ,
other users get what the "other" bits give (r\-x on directories and programs, r\-\- on
files). A user other than root needs the line
.B user_allow_other
in
.I /etc/fuse.conf
for that; distfs checks it before mounting and says so.
.PP
When a file is opened and its directory holds
.IR file .prefetch
(a publisher's prefetch list: \fB{"version":1,"size":\fIbytes\fB,"ranges":[[\fIoffset\fB,\fIlen\fB],...]}\fR,
ranges sorted and disjoint), the listed ranges are fetched at once, in one batch. A list made
for a file of another size is ignored.
.PP
Each project directory gains a symbolic link
.B latest
to its newest stable version: the highest semantic version listed in its
.B versions
file (a leading "v" stripped, pre-releases and unparsable lines skipped; if none qualifies, the
last line), or without that file the highest version directory; and one symbolic link per
line \fICH VER\fR of its \fBchannels\fR file (e.g. \fBbeta\fR \(-> \fBv1.2.0\-rc1\fR),
when that version directory exists. Files without stored
permissions are mode 0444, or 0555 when named *.AppImage, starting with an ELF header or "#!",
or listed as a download in their version's
.BR dist.json .
The extended attribute
.B user.ipfs.cid
gives any node's CID.
"##,
    ),
    (
        "serve",
        r##".B GET /ipfs/\fIcid\fB?format=raw
returns one block;
.B ?format=car
a CAR of the DAG, with
.B dag\-scope=block|entity|all
and
.BR entity\-bytes=\fIfrom\fB:\fIto ;
.B /ipns/\fIname\fR and
.B /routing/v1/ipns/\fIname\fR serve stored IPNS records;
.B /routing/v1/providers/\fIcid\fR
the HTTP providers announced to it
.RB ( \-\-accept\-providers ).
With
.BR \-\-upstream ,
it is a site cache: blocks it lacks are fetched from the upstreams, verified, kept in the
first
.B \-\-store
under
.B \-\-store\-size
and served (502, or 504 past the deadline, when the upstreams fail). Prints its bound address on
standard output (use port 0 for a free port) and runs until SIGINT or SIGTERM.
"##,
    ),
    (
        "restart",
        r##"Starts the new binary (the daemon's own executable path unless
.BR \-\-binary ),
with the daemon's arguments, and hands it the live FUSE connection, the cache lock and a
snapshot of the inode table, open file handles and root; the old daemon then exits without
unmounting. Open files, running programs and inode numbers carry on; requests the old
daemon had read but not answered are re-delivered by the kernel (Linux 6.9 or later). If
the new process fails to start, the old one keeps serving and this command exits 1. Not
carried over: in-memory statistics and source health scores. The systemd unit's
.B ExecReload
runs it.
"##,
    ),
    (
        "trace",
        r##"For every file read, writes
.IR DIR / path .prefetch,
where
.I path
is the file's path in the mount, so
.I DIR
is the publisher's tree that was mounted. Reads closer than 64 KiB are merged into one range.
"##,
    ),
];

/// The sections after COMMANDS.
const TRAILER: &str = r##".SH MOUNTING WITH mount(8) AND /etc/fstab
The helper
.B mount.fuse.distfs
(installed in
.IR /sbin )
lets
.B mount \-t fuse.distfs
.I SOURCE MOUNTPOINT
and an
.I /etc/fstab
line start a
.B distfs mount
in the background.
.I SOURCE
is the root
.RB ( /ipfs/ ...
or
.BR /ipns/ ...),
or
.B distfs
for the configured one. Options map to the flags of
.BR "distfs mount" :
.BR allow_other ,
.BR offline ,
and
.IB key = value
for the others
.RB ( cache_dir= ,
.BR cache_size= ,
.BR gateway=
(repeatable),
.BR config= ,
\&...). The generic options mount(8) passes
.RB ( rw ,
.BR ro ,
.BR defaults ,
.BR noauto ,
.BR user ,
.BR _netdev ,
.BR nofail ,
.BR x\-* ,
\&...) are accepted. Unmount with
.BR umount ;
the daemon then exits. Its messages go to the system log (tag
.BR distfs ).
.PP
.nf
/ipns/dist.ipfs.tech  /dist  fuse.distfs  _netdev,allow_other,cache_size=20G  0  0
.fi
.SH EXIT STATUS
0 success; 1 failure, with a one-line reason on standard error; 2 usage error.
.SH ENVIRONMENT
.TP
.B DISTFS_LOG
A tracing filter, e.g. \fBdebug\fR or \fBdistfs=debug\fR (default \fBwarn\fR).
.SH FILES
.TP
.I /etc/distfs/config.toml
The configuration file of
.BR "distfs mount" ;
see
.BR distfs.conf (5).
.TP
.I /var/cache/distfs
The block cache of a mount run by root.
.TP
.I /etc/fuse.conf
Needs
.B user_allow_other
for
.B \-\-allow\-other
by users other than root.
.SH EXAMPLES
.nf
distfs add \-Q \-\-store /srv/blocks ./dist
distfs serve \-\-store /srv/blocks \-\-listen 127.0.0.1:8080
distfs mount /dist \-\-root /ipfs/bafy... \-\-gateway http://127.0.0.1:8080
ls /dist/kubo/latest/
.fi
.SH SEE ALSO
.BR distfs.conf (5),
.BR mount (8),
.BR fstab (5),
.BR fusermount3 (1)
"##;
