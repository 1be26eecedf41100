//! `podtrail-sysprobe`: makes exactly the privilege-relevant syscalls the
//! privileged tests and the overhead benchmark need, and prints what each
//! returned (`ok` or the errno), so a test can compare the recorded row with
//! what really happened. Exits 0 unless the command itself is malformed.
//!
//! ```text
//! podtrail-sysprobe setuid UID                 setuid(UID)
//! podtrail-sysprobe as-user UID setuid TARGET  setresuid(UID,UID,UID), then setuid(TARGET)
//! podtrail-sysprobe memfd-exec FILE NAME       copy FILE into memfd NAME, fexecve it
//! podtrail-sysprobe bind PORT                  bind a TCP socket to 127.0.0.1:PORT
//! podtrail-sysprobe chown FILE UID             chown(FILE, UID, -1)
//! podtrail-sysprobe loop setuid|getpid N       N calls, prints ns per call
//! ```

use std::ffi::CString;
use std::time::Instant;

fn result(rc: libc::c_long) -> String {
    if rc < 0 { format!("{}", std::io::Error::last_os_error()) } else { "ok".into() }
}

fn num<T: std::str::FromStr>(s: Option<&String>, what: &str) -> T {
    s.and_then(|s| s.parse().ok()).unwrap_or_else(|| usage(&format!("{what}: expected a number")))
}

fn usage(why: &str) -> ! {
    eprintln!("podtrail-sysprobe: {why}\nusage: setuid UID | as-user UID setuid TARGET | memfd-exec FILE NAME | bind PORT | chown FILE UID | loop setuid|getpid N");
    std::process::exit(2)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("setuid") => {
            let uid: u32 = num(args.get(1), "UID");
            // SAFETY: plain syscall.
            println!("setuid {uid}: {}", result(unsafe { libc::setuid(uid) } as libc::c_long));
        }
        Some("as-user") => {
            let uid: u32 = num(args.get(1), "UID");
            let target: u32 = num(args.get(3), "TARGET");
            // SAFETY: plain syscalls.
            let drop = unsafe { libc::setresuid(uid, uid, uid) };
            if drop != 0 {
                println!("setresuid {uid}: {}", result(-1));
                std::process::exit(1);
            }
            // SAFETY: plain syscall.
            println!("setuid {target}: {}", result(unsafe { libc::setuid(target) } as libc::c_long));
        }
        Some("memfd-exec") => {
            let (Some(file), Some(name)) = (args.get(1), args.get(2)) else { usage("memfd-exec FILE NAME") };
            let bytes = std::fs::read(file).unwrap_or_else(|e| usage(&format!("reading {file}: {e}")));
            let cname = CString::new(name.as_str()).expect("no NUL");
            // SAFETY: a valid C string; the fd is ours.
            let fd = unsafe { libc::memfd_create(cname.as_ptr(), 0) };
            assert!(fd >= 0, "memfd_create: {}", std::io::Error::last_os_error());
            // SAFETY: writing our buffer to our fd.
            let n = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
            assert_eq!(n as usize, bytes.len(), "write to memfd");
            let argv0 = CString::new(name.as_str()).expect("no NUL");
            let argv = [argv0.as_ptr(), std::ptr::null()];
            let envp = [std::ptr::null()];
            // SAFETY: NULL-terminated argv/envp of valid C strings; returns only on failure.
            unsafe { libc::fexecve(fd, argv.as_ptr(), envp.as_ptr()) };
            let err = std::io::Error::last_os_error();
            // Debian's 5.10 kernels refuse execveat(fd, "", AT_EMPTY_PATH) on a
            // memfd with ENOENT (the VM matrix found it); the other common way to
            // run a memfd is its /proc path, the same file with no link either.
            if err.raw_os_error() == Some(libc::ENOENT) {
                let path = CString::new(format!("/proc/self/fd/{fd}")).expect("no NUL");
                // SAFETY: as above.
                unsafe { libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
                println!("fexecve: {err}; execve /proc/self/fd/{fd}: {}", result(-1));
            } else {
                println!("fexecve: {err}");
            }
            std::process::exit(1);
        }
        Some("bind") => {
            let port: u16 = num(args.get(1), "PORT");
            match std::net::TcpListener::bind(("127.0.0.1", port)) {
                Ok(_) => println!("bind {port}: ok"),
                Err(e) => println!("bind {port}: {e}"),
            }
        }
        Some("chown") => {
            let Some(file) = args.get(1) else { usage("chown FILE UID") };
            let uid: u32 = num(args.get(2), "UID");
            let c = CString::new(file.as_str()).expect("no NUL");
            // SAFETY: a valid C string; gid -1 leaves the group.
            println!("chown {uid}: {}", result(unsafe { libc::chown(c.as_ptr(), uid, u32::MAX) } as libc::c_long));
        }
        Some("loop") => {
            let n: u64 = num(args.get(2), "N");
            // SAFETY: plain syscalls (setuid to the current uid changes nothing).
            let uid = unsafe { libc::getuid() };
            let call: Box<dyn Fn()> = match args.get(1).map(String::as_str) {
                Some("setuid") => Box::new(move || unsafe {
                    libc::setuid(uid);
                }),
                Some("getpid") => Box::new(|| unsafe {
                    libc::syscall(libc::SYS_getpid);
                }),
                _ => usage("loop setuid|getpid N"),
            };
            let t = Instant::now();
            for _ in 0..n {
                call();
            }
            println!("{:.1}", t.elapsed().as_nanos() as f64 / n as f64);
        }
        _ => usage("unknown command"),
    }
}
