//! essa's WASI differential corpus, in Rust: what Rust's std does over WASI.
//!
//! `wasi-corpus-rust MODE [ARGS...]`; the tests preopen `/sandbox` (read-write)
//! and `/ro` (read-only). Every line printed is host-independent: errors as
//! their kind and WASI errno, directory listings sorted.

use std::env;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, Read, Seek, SeekFrom, Write};
use std::process;

fn show<T: std::fmt::Debug>(label: &str, result: io::Result<T>) -> Option<T> {
    match result {
        Ok(value) => {
            println!("{}: ok {:?}", label, value);
            Some(value)
        }
        Err(err) => {
            println!("{}: error {:?} (errno {:?})", label, err.kind(), err.raw_os_error());
            None
        }
    }
}

fn listing(path: &str) -> io::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in fs::read_dir(path)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let tag = if kind.is_dir() { "/" } else if kind.is_symlink() { "@" } else { "" };
        names.push(format!("{}{}", entry.file_name().to_string_lossy(), tag));
    }
    names.sort();
    Ok(names)
}

fn fs_mode() {
    println!("-- reading");
    show("read_to_string hello.txt", fs::read_to_string("/sandbox/hello.txt"));
    show("read missing", fs::read("/sandbox/missing.txt"));
    show("read_dir /sandbox", listing("/sandbox"));
    show("read_dir /sandbox/sub", listing("/sandbox/sub"));
    show("read_dir /ro", listing("/ro"));
    show("read_dir a file", listing("/sandbox/hello.txt"));
    show("read_dir outside", listing("/"));
    show("read_dir /sandbox/..", listing("/sandbox/.."));
    show("metadata hello.txt len", fs::metadata("/sandbox/hello.txt").map(|m| (m.len(), m.is_file())));
    show("metadata sub is_dir", fs::metadata("/sandbox/sub").map(|m| m.is_dir()));
    show("symlink_metadata link-hello", fs::symlink_metadata("/sandbox/link-hello").map(|m| m.file_type().is_symlink()));
    show("metadata link-hello (followed)", fs::metadata("/sandbox/link-hello").map(|m| m.len()));
    show("metadata link-escape (followed)", fs::metadata("/sandbox/link-escape").map(|m| m.len()));
    show("read_link link-hello", fs::read_link("/sandbox/link-hello"));
    show("read_link link-abs", fs::read_link("/sandbox/link-abs"));
    show("read through sub/link-up", fs::read_to_string("/sandbox/sub/link-up"));
    show("read outside through ..", fs::read_to_string("/sandbox/../outside.txt"));
    show("canonicalize", fs::canonicalize("/sandbox/hello.txt"));
    show("exists /sandbox/nope", Ok::<bool, io::Error>(std::path::Path::new("/sandbox/nope").exists()));

    println!("-- writing");
    show("create_dir_all r/a/b", fs::create_dir_all("/sandbox/r/a/b"));
    show("create_dir r (exists)", fs::create_dir("/sandbox/r"));
    show("write r/a/one.txt", fs::write("/sandbox/r/a/one.txt", b"one\n"));
    show("write r/a/b/two.txt", fs::write("/sandbox/r/a/b/two.txt", b"two\n"));
    show("copy one -> three", fs::copy("/sandbox/r/a/one.txt", "/sandbox/r/three.txt"));
    show("rename three -> four", fs::rename("/sandbox/r/three.txt", "/sandbox/r/four.txt"));
    show("hard_link four -> five", fs::hard_link("/sandbox/r/four.txt", "/sandbox/r/five.txt"));
    show("nlink of five", fs::metadata("/sandbox/r/five.txt").map(|m| m.len()));
    show("read_dir r", listing("/sandbox/r"));
    show("remove_file a directory", fs::remove_file("/sandbox/r/a"));
    show("remove_dir not empty", fs::remove_dir("/sandbox/r/a"));
    show("remove_dir_all r/a", fs::remove_dir_all("/sandbox/r/a"));
    show("read_dir r after", listing("/sandbox/r"));
    show("write into /ro", fs::write("/ro/new.txt", b"x"));
    show("create_dir in /ro", fs::create_dir("/ro/newdir"));
    show("remove_file in /ro", fs::remove_file("/ro/data.txt"));
    show("write outside", fs::write("/sandbox/../escaped.txt", b"x"));
    show("write at /", fs::write("/escaped.txt", b"x"));

    println!("-- open options");
    let file = show("create_new log.txt", OpenOptions::new().write(true).create_new(true).open("/sandbox/log.txt"));
    if let Some(mut file) = file {
        show("write", file.write(b"first line\n"));
        show("sync_all", file.sync_all());
        show("set_len 5", file.set_len(5));
        show("seek end", file.seek(SeekFrom::End(0)));
        show("write after set_len", file.write_all(b"!\n"));
    }
    show("create_new again", OpenOptions::new().write(true).create_new(true).open("/sandbox/log.txt"));
    let appender = show("open append", OpenOptions::new().append(true).open("/sandbox/log.txt"));
    if let Some(mut appender) = appender {
        show("append", appender.write_all(b"appended\n"));
        show("seek start", appender.seek(SeekFrom::Start(0)));
        show("append after seek", appender.write_all(b"again\n"));
    }
    show("read log.txt", fs::read_to_string("/sandbox/log.txt"));
    let file = show("open read+write", OpenOptions::new().read(true).write(true).open("/sandbox/log.txt"));
    if let Some(mut file) = file {
        let mut head = [0u8; 4];
        show("read 4", file.read(&mut head).map(|n| String::from_utf8_lossy(&head[..n]).into_owned()));
        show("stream_position", file.stream_position());
        show("overwrite", file.write_all(b"XX"));
        show("seek -2 current", file.seek(SeekFrom::Current(-2)));
        show("seek before start", file.seek(SeekFrom::Current(-100)));
    }
    show("read log.txt", fs::read_to_string("/sandbox/log.txt"));
    show("truncate via create", File::create("/sandbox/log.txt").map(|_| ()));
    show("log.txt len", fs::metadata("/sandbox/log.txt").map(|m| m.len()));
    show("open a directory for writing", OpenOptions::new().write(true).open("/sandbox/sub"));
    show("open dir as file and read", File::open("/sandbox/sub").and_then(|mut f| {
        let mut s = String::new();
        f.read_to_string(&mut s).map(|_| s)
    }));
    show("open write in /ro", OpenOptions::new().write(true).open("/ro/data.txt"));
    show("open read in /ro", File::open("/ro/data.txt").map(|_| ()));
    show("set_permissions readonly", fs::metadata("/sandbox/hello.txt").and_then(|m| {
        let mut perms = m.permissions();
        perms.set_readonly(true);
        fs::set_permissions("/sandbox/hello.txt", perms)
    }));
}

fn io_mode(args: &[String]) {
    println!("-- args");
    for (i, arg) in env::args().enumerate() {
        println!("arg {}: {:?}", i, arg);
    }
    println!("-- env");
    let mut vars: Vec<(String, String)> = env::vars().collect();
    vars.sort();
    for (key, value) in vars {
        println!("{}={:?}", key, value);
    }
    println!("var GREETING: {:?}", env::var("GREETING"));
    println!("var MISSING: {:?}", env::var("MISSING").is_err());
    println!("current_dir: {:?}", env::current_dir().map_err(|e| e.kind()));
    println!("-- stdin");
    let stdin = io::stdin();
    let mut count = 0;
    for line in stdin.lock().lines() {
        match line {
            Ok(line) => {
                count += 1;
                println!("line {}: {}", count, line.to_uppercase());
            }
            Err(err) => {
                println!("stdin error: {:?}", err.kind());
                break;
            }
        }
    }
    println!("{} line(s)", count);
    let mut rest = Vec::new();
    show("read after end", io::stdin().read_to_end(&mut rest));
    eprintln!("a line on stderr");
    let code: i32 = args.get(0).and_then(|a| a.parse().ok()).unwrap_or(0);
    io::stdout().flush().unwrap();
    process::exit(code);
}

fn main() {
    let args: Vec<String> = env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("fs") => fs_mode(),
        Some("io") => io_mode(&args[1..]),
        Some("panic") => panic!("a panic on purpose"),
        other => {
            eprintln!("usage: wasi-corpus-rust fs|io [STATUS]|panic (got {:?})", other);
            process::exit(2);
        }
    }
}
