//! Test helpers for the lake: a real S3-compatible server (moto, PyPI
//! `moto[server]`, installed by tests/setup.sh) on 127.0.0.1, and a TCP relay in
//! front of it that can be cut and restored to make the store unreachable without
//! losing what it holds (moto keeps objects in memory only).

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Credentials moto accepts (it does not check them).
pub const AWS_ENV: &[(&str, &str)] = &[("AWS_ACCESS_KEY_ID", "podtrail-test"), ("AWS_SECRET_ACCESS_KEY", "podtrail-test-secret"), ("AWS_REGION", "us-east-1")];

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn wait_listening(port: u16, what: &str) {
    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(started.elapsed() < Duration::from_secs(30), "{what} not listening on 127.0.0.1:{port} after 30 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `moto_server` on 127.0.0.1; ended (by pid) when dropped.
pub struct Moto {
    child: Child,
    pub port: u16,
}

impl Moto {
    pub fn start() -> Moto {
        Moto::start_env(&[])
    }

    /// A server that checks credentials like S3 does: one IAM user allowed `s3:*`
    /// and bucket `bucket` are created (the first three actions go unchecked),
    /// then every request must be signed with that user's key. Returns the key id
    /// and secret.
    pub fn start_with_auth(bucket: &str) -> (Moto, String, String) {
        let m = Moto::start_env(&[("INITIAL_NO_AUTH_ACTION_COUNT", "3")]);
        let out = m.boto3(
            "import json\niam = boto3.client('iam', endpoint_url=s3.meta.endpoint_url, aws_access_key_id='x', aws_secret_access_key='x', region_name='us-east-1')\n\
             iam.create_user(UserName='podtrail')\n\
             iam.put_user_policy(UserName='podtrail', PolicyName='s3', PolicyDocument=json.dumps({'Version': '2012-10-17', 'Statement': [{'Effect': 'Allow', 'Action': 's3:*', 'Resource': '*'}]}))\n\
             k = iam.create_access_key(UserName='podtrail')['AccessKey']\nprint(k['AccessKeyId'], k['SecretAccessKey'])",
        );
        let (key, secret) = out.trim().split_once(' ').expect("key and secret");
        let script = format!(
            "import boto3\nboto3.client('s3', endpoint_url='{}', aws_access_key_id='{key}', aws_secret_access_key='{secret}', region_name='us-east-1').create_bucket(Bucket='{bucket}')",
            m.endpoint()
        );
        let o = Command::new("python3").args(["-c", &script]).output().expect("python3 with boto3");
        assert!(o.status.success(), "create_bucket with the IAM user's key: {}", String::from_utf8_lossy(&o.stderr));
        (m, key.to_owned(), secret.to_owned())
    }

    fn start_env(env: &[(&str, &str)]) -> Moto {
        let port = free_port();
        let child = Command::new("python3")
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 -m moto.server (PyPI moto[server]; tests/setup.sh installs it)");
        let m = Moto { child, port };
        wait_listening(port, "moto server");
        m
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Run a boto3 snippet against this server; `s3` is the client. Returns stdout.
    pub fn boto3(&self, code: &str) -> String {
        boto3(&self.endpoint(), code)
    }

    /// A boto3 snippet signed with the given key (for a server started with auth).
    pub fn boto3_as(&self, key: &str, secret: &str, code: &str) -> String {
        let script = format!(
            "import boto3\ns3 = boto3.client('s3', endpoint_url='{}', aws_access_key_id='{key}', aws_secret_access_key='{secret}', region_name='us-east-1')\n{code}\n",
            self.endpoint()
        );
        let out = Command::new("python3").args(["-c", &script]).output().expect("python3 with boto3");
        assert!(out.status.success(), "boto3 failed: {}\n{script}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    pub fn create_bucket(&self, bucket: &str) {
        self.boto3(&format!("s3.create_bucket(Bucket='{bucket}')"));
    }

    /// Keys under `prefix` in `bucket`, sorted.
    pub fn keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let out = self.boto3(&format!(
            "p = s3.get_paginator('list_objects_v2')\nfor page in p.paginate(Bucket='{bucket}', Prefix='{prefix}'):\n    for o in page.get('Contents', []):\n        print(o['Key'])"
        ));
        let mut keys: Vec<String> = out.lines().map(str::to_owned).collect();
        keys.sort();
        keys
    }
}

/// Run a boto3 snippet with an S3 client `s3` for `endpoint`; returns stdout.
pub fn boto3(endpoint: &str, code: &str) -> String {
    let script = format!(
        "import boto3\ns3 = boto3.client('s3', endpoint_url='{endpoint}', aws_access_key_id='podtrail-test', aws_secret_access_key='podtrail-test-secret', region_name='us-east-1')\n{code}\n"
    );
    let out = Command::new("python3").args(["-c", &script]).output().expect("python3 with boto3");
    assert!(out.status.success(), "boto3 failed: {}\n{script}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

impl Drop for Moto {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the pid of the server this test started.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

/// A TCP relay 127.0.0.1:port -> 127.0.0.1:upstream that can be cut (listener
/// closed, open connections reset) and restored on the same port.
pub struct Relay {
    pub port: u16,
    upstream: u16,
    state: Option<RelayState>,
    /// Bytes relayed from the server to clients (what readers fetched, with HTTP overhead).
    down: Arc<std::sync::atomic::AtomicU64>,
}

/// Open relayed connections by id (each leaves the map when it closes).
type Conns = Arc<Mutex<std::collections::HashMap<u64, (TcpStream, TcpStream)>>>;

struct RelayState {
    stop: Arc<AtomicBool>,
    conns: Conns,
    accept: std::thread::JoinHandle<()>,
}

impl Relay {
    pub fn start(upstream: u16) -> Relay {
        let mut r = Relay { port: free_port(), upstream, state: None, down: Arc::default() };
        r.up();
        r
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn bytes_down(&self) -> u64 {
        self.down.load(Ordering::Relaxed)
    }

    /// Accept and relay again (same port).
    pub fn up(&mut self) {
        assert!(self.state.is_none(), "relay already up");
        let listener = TcpListener::bind(("127.0.0.1", self.port)).unwrap_or_else(|e| panic!("relay bind 127.0.0.1:{}: {e}", self.port));
        let stop = Arc::new(AtomicBool::new(false));
        let conns: Conns = Arc::default();
        let (stop2, conns2, upstream, down) = (Arc::clone(&stop), Arc::clone(&conns), self.upstream, Arc::clone(&self.down));
        let accept = std::thread::spawn(move || {
            let mut next_id = 0u64;
            for client in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else { continue };
                next_id += 1;
                conns2.lock().unwrap().insert(next_id, (client.try_clone().unwrap(), server.try_clone().unwrap()));
                pipe(client.try_clone().unwrap(), server.try_clone().unwrap(), None, None);
                pipe(server, client, Some(Arc::clone(&down)), Some((Arc::clone(&conns2), next_id)));
            }
        });
        wait_listening(self.port, "relay");
        self.state = Some(RelayState { stop, conns, accept });
    }

    /// Cut: nothing listens on the port any more, open connections are reset.
    pub fn down(&mut self) {
        let st = self.state.take().expect("relay is up");
        st.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port)); // wake accept()
        let _ = st.accept.join();
        for (_, (a, b)) in st.conns.lock().unwrap().drain() {
            let _ = a.shutdown(Shutdown::Both);
            let _ = b.shutdown(Shutdown::Both);
        }
    }
}

/// Copy `from` to `to` on a thread; `done` removes the connection from the relay's
/// map when this direction ends.
fn pipe(mut from: TcpStream, mut to: TcpStream, count: Option<Arc<std::sync::atomic::AtomicU64>>, done: Option<(Conns, u64)>) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 64 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if let Some(c) = &count {
                        c.fetch_add(n as u64, Ordering::Relaxed);
                    }
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown(Shutdown::Write);
        if let Some((conns, id)) = done {
            conns.lock().unwrap().remove(&id);
        }
    });
}

impl Drop for Relay {
    fn drop(&mut self) {
        if self.state.is_some() {
            self.down();
        }
    }
}

/// Every file under `dir` (recursively) whose name ends with `.parquet`, relative.
pub fn parquet_files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.to_string_lossy().ends_with(".parquet") {
                out.push(p.strip_prefix(dir).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    out
}
