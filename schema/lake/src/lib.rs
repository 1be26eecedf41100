//! podtrail-lake: the client that writes and lists the lake, a local directory or
//! an S3 bucket (with AWS credentials from the environment or a profile). The
//! layout it writes is the schema crate's (`podtrail_schema::lake`).
//!
//! Writes are whole-object and atomic (S3 PUT; local: staging file + link), so a
//! reader never sees half an object. A segment's object is written only if absent
//! (S3 `If-None-Match: *`, local hard link): exporting or shipping it again, from
//! any number of processes, never writes a second copy of its rows. Snapshots are
//! replaced only when their bytes changed.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use object_store::aws::{AmazonS3Builder, S3ConditionalPut};
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjPath;
use object_store::{ClientOptions, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, RetryConfig};
use podtrail_schema::catalog::{Catalog, SegmentRecord};
use podtrail_schema::lake as layout;
use podtrail_schema::tables::TableDef;

pub use podtrail_schema::lake::{SNAPSHOT_TABLES, parquet_bytes, snapshot_schema};

/// Where the lake is: a local directory or an S3 bucket and prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Dir(PathBuf),
    S3 { bucket: String, prefix: String },
}

impl Target {
    /// `s3://BUCKET[/PREFIX]` or a directory path.
    pub fn parse(s: &str) -> Result<Target, LakeError> {
        if let Some(rest) = s.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(LakeError::Usage(format!("'{s}': no bucket name (expected s3://BUCKET/PREFIX)")));
            }
            return Ok(Target::S3 { bucket: bucket.to_owned(), prefix: prefix.trim_matches('/').to_owned() });
        }
        if let Some((scheme, _)) = s.split_once("://") {
            return Err(LakeError::Usage(format!("'{s}': unsupported scheme {scheme}:// (use s3://BUCKET/PREFIX or a directory)")));
        }
        if s.is_empty() {
            return Err(LakeError::Usage("empty lake location".into()));
        }
        let p = PathBuf::from(s);
        let abs = if p.is_absolute() { p } else { std::env::current_dir().map_err(|e| LakeError::Usage(format!("current directory: {e}")))?.join(p) };
        Ok(Target::Dir(abs))
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Dir(p) => write!(f, "{}", p.display()),
            Target::S3 { bucket, prefix } if prefix.is_empty() => write!(f, "s3://{bucket}"),
            Target::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
        }
    }
}

/// S3 settings beyond the AWS environment (`AWS_ACCESS_KEY_ID`,
/// `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`, `AWS_ENDPOINT_URL`,
/// `AWS_PROFILE` with `~/.aws/credentials` and `~/.aws/config`).
#[derive(Debug, Clone)]
pub struct S3Options {
    /// S3-compatible endpoint, e.g. `http://127.0.0.1:9000` (plain HTTP is allowed
    /// only when the endpoint says so).
    pub endpoint: Option<String>,
    pub region: Option<String>,
    /// `https://BUCKET.host/key` instead of the default `https://host/BUCKET/key`.
    pub virtual_hosted_style: bool,
    /// Per request, including the upload of one segment.
    pub request_timeout: Duration,
    /// Retries of one request inside the client (with backoff) before it fails.
    pub max_retries: usize,
}

impl Default for S3Options {
    fn default() -> Self {
        S3Options { endpoint: None, region: None, virtual_hosted_style: false, request_timeout: Duration::from_secs(120), max_retries: 3 }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LakeError {
    /// Bad location, node name or settings: the user's to fix.
    #[error("{0}")]
    Usage(String),
    /// The store refused or failed: names the object and the cause.
    #[error("{0}")]
    Store(String),
    /// A local file of the data dir could not be read or does not match the catalog.
    #[error("{0}")]
    Source(String),
}

/// What a write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Put {
    Written,
    /// The same object was already there (an earlier export or shipment).
    AlreadyThere,
}

pub struct Lake {
    store: Arc<dyn ObjectStore>,
    root: ObjPath,
    target: Target,
}

impl std::fmt::Debug for Lake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Lake({})", self.target)
    }
}

impl Lake {
    /// Connect to the lake. A local directory is created when `create` (export,
    /// shipping) and must exist otherwise (queries).
    pub fn open(target: &Target, s3: &S3Options, create: bool) -> Result<Lake, LakeError> {
        match target {
            Target::Dir(dir) => {
                if create {
                    std::fs::create_dir_all(dir).map_err(|e| LakeError::Store(format!("cannot create lake directory {}: {e}", dir.display())))?;
                } else if !dir.is_dir() {
                    return Err(LakeError::Usage(format!("lake directory {} does not exist", dir.display())));
                }
                let store = LocalFileSystem::new_with_prefix(dir).map_err(|e| LakeError::Store(format!("lake directory {}: {}", dir.display(), describe(&e))))?;
                Ok(Lake { store: Arc::new(store), root: ObjPath::default(), target: target.clone() })
            }
            Target::S3 { bucket, prefix } => {
                let store = s3_builder(bucket, s3)?.build().map_err(|e| LakeError::Usage(format!("{target}: {}", describe(&e))))?;
                Ok(Lake { store: Arc::new(store), root: ObjPath::from(prefix.as_str()), target: target.clone() })
            }
        }
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    pub fn store(&self) -> Arc<dyn ObjectStore> {
        Arc::clone(&self.store)
    }

    /// The URL DataFusion lists a table's files under (trailing `/`: a directory).
    pub fn table_url(&self, dir: &str) -> String {
        match &self.target {
            Target::Dir(d) => format!("{}/", d.join(dir).display()),
            Target::S3 { bucket, prefix } if prefix.is_empty() => format!("s3://{bucket}/{dir}/"),
            Target::S3 { bucket, prefix } => format!("s3://{bucket}/{prefix}/{dir}/"),
        }
    }

    /// `s3://BUCKET` for registering the store with DataFusion; None for a directory
    /// (DataFusion's own local file system reads it).
    pub fn store_url(&self) -> Option<String> {
        match &self.target {
            Target::Dir(_) => None,
            Target::S3 { bucket, .. } => Some(format!("s3://{bucket}")),
        }
    }

    /// Key of a segment's object under `dir` (the table, or `ocsf/<class>`).
    pub fn segment_key(&self, dir: &str, time_min_ns: i64, node: &str, segment_id: &str) -> ObjPath {
        self.under_root(&layout::segment_key(dir, time_min_ns, node, segment_id))
    }

    pub fn snapshot_key(&self, table: &str, node: &str) -> ObjPath {
        self.under_root(&layout::snapshot_key(table, node))
    }

    fn under_root(&self, relative: &str) -> ObjPath {
        relative.split('/').fold(self.root.clone(), |key, part| key.join(part))
    }

    /// Display form of a key (for messages).
    pub fn show(&self, key: &ObjPath) -> String {
        match &self.target {
            Target::Dir(d) => d.join(key.as_ref()).display().to_string(),
            Target::S3 { bucket, .. } => format!("s3://{bucket}/{key}"),
        }
    }

    /// One cheap request that fails the way writes would: missing bucket, bad
    /// credentials, unreachable endpoint. Run before anything is written.
    pub async fn check(&self) -> Result<(), LakeError> {
        match self.store.list_with_delimiter(Some(&self.root)).await {
            Ok(_) => Ok(()),
            Err(e) => Err(LakeError::Store(format!("{}: {}", self.target, describe(&e)))),
        }
    }

    /// Write `bytes` at `key` unless an object is already there. An existing object
    /// of the same size is the same segment written before; another size is a
    /// conflict (two nodes exporting under one node name) and an error.
    pub async fn put_new(&self, key: &ObjPath, bytes: Bytes) -> Result<Put, LakeError> {
        let len = bytes.len() as u64;
        let opts = PutOptions { mode: PutMode::Create, ..Default::default() };
        match self.store.put_opts(key, PutPayload::from_bytes(bytes), opts).await {
            Ok(_) => Ok(Put::Written),
            Err(object_store::Error::AlreadyExists { .. }) => {
                let meta = self.store.head(key).await.map_err(|e| LakeError::Store(format!("{}: {}", self.show(key), describe(&e))))?;
                if meta.size == len {
                    Ok(Put::AlreadyThere)
                } else {
                    Err(LakeError::Store(format!(
                        "{} already exists with {} bytes, this segment has {len}: is another node exporting under the same node name?",
                        self.show(key),
                        meta.size
                    )))
                }
            }
            Err(e) => Err(LakeError::Store(format!("writing {}: {}", self.show(key), describe(&e)))),
        }
    }

    /// Replace the object at `key` with `bytes` unless it already holds exactly them.
    pub async fn put_if_changed(&self, key: &ObjPath, bytes: Bytes) -> Result<Put, LakeError> {
        match self.store.get(key).await {
            Ok(got) => {
                let old = got.bytes().await.map_err(|e| LakeError::Store(format!("reading {}: {}", self.show(key), describe(&e))))?;
                if old == bytes {
                    return Ok(Put::AlreadyThere);
                }
            }
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(LakeError::Store(format!("reading {}: {}", self.show(key), describe(&e)))),
        }
        self.store.put(key, PutPayload::from_bytes(bytes)).await.map_err(|e| LakeError::Store(format!("writing {}: {}", self.show(key), describe(&e))))?;
        Ok(Put::Written)
    }

    /// Upload one sealed segment, byte for byte, after checking it against the
    /// catalog's SHA-256 (a damaged file is never exported). Returns the outcome and
    /// the key.
    pub async fn put_segment(&self, data_dir: &Path, seg: &SegmentRecord, node: &str) -> Result<(Put, ObjPath), LakeError> {
        let bytes = read_segment(data_dir, seg)?;
        let key = self.segment_key(&seg.table_name, seg.time_min, node, &seg.segment_id);
        Ok((self.put_new(&key, bytes).await?, key))
    }
}

/// A sealed segment's bytes, checked against the catalog (size and SHA-256).
pub fn read_segment(data_dir: &Path, seg: &SegmentRecord) -> Result<Bytes, LakeError> {
    layout::read_segment(data_dir, seg).map_err(LakeError::Source)
}

/// A node name usable as a path part in every store and engine.
pub fn check_node_name(node: &str) -> Result<(), LakeError> {
    layout::check_node_name(node).map_err(LakeError::Usage)
}

/// A catalog table as the Parquet snapshot the lake keeps per node.
pub fn snapshot_parquet(catalog: &Catalog, def: &TableDef, node: &str) -> Result<Bytes, LakeError> {
    layout::snapshot_parquet(catalog, def, node).map_err(LakeError::Source)
}

fn s3_builder(bucket: &str, s3: &S3Options) -> Result<AmazonS3Builder, LakeError> {
    let mut b = AmazonS3Builder::from_env().with_bucket_name(bucket).with_conditional_put(S3ConditionalPut::ETagMatch);
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let profile = aws_profile();
    let has_env_key = env("AWS_ACCESS_KEY_ID").is_some() && env("AWS_SECRET_ACCESS_KEY").is_some();
    if !has_env_key {
        match &profile {
            Some(p) if p.key.is_some() && p.secret.is_some() => {
                b = b.with_access_key_id(p.key.clone().expect("checked")).with_secret_access_key(p.secret.clone().expect("checked"));
                if let Some(t) = &p.token {
                    b = b.with_token(t.clone());
                }
            }
            _ if env("AWS_WEB_IDENTITY_TOKEN_FILE").is_some() || env("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI").is_some() || env("AWS_CONTAINER_CREDENTIALS_FULL_URI").is_some() => {}
            _ => {
                // Without this, the client would ask the EC2 instance metadata
                // service: a request to 169.254.169.254 nobody asked for.
                return Err(LakeError::Usage(
                    "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE with ~/.aws/credentials, or a web-identity token (AWS_WEB_IDENTITY_TOKEN_FILE + AWS_ROLE_ARN)".into(),
                ));
            }
        }
    }
    let region = s3.region.clone().or_else(|| env("AWS_REGION")).or_else(|| env("AWS_DEFAULT_REGION")).or_else(|| profile.as_ref().and_then(|p| p.region.clone()));
    if let Some(r) = region {
        b = b.with_region(r);
    }
    let endpoint = s3.endpoint.clone().or_else(|| env("AWS_ENDPOINT_URL_S3")).or_else(|| env("AWS_ENDPOINT_URL")).or_else(|| env("AWS_ENDPOINT"));
    let mut client = ClientOptions::new().with_timeout(s3.request_timeout).with_connect_timeout(Duration::from_secs(5));
    if let Some(ep) = endpoint {
        if !(ep.starts_with("http://") || ep.starts_with("https://")) {
            return Err(LakeError::Usage(format!("endpoint '{ep}' must start with http:// or https://")));
        }
        // Plain HTTP only when the endpoint itself says so.
        client = client.with_allow_http(ep.starts_with("http://"));
        b = b.with_endpoint(ep);
    }
    let retry = RetryConfig {
        max_retries: s3.max_retries,
        retry_timeout: s3.request_timeout,
        backoff: object_store::BackoffConfig { init_backoff: Duration::from_millis(200), max_backoff: Duration::from_secs(5), base: 2.0 },
    };
    Ok(b.with_virtual_hosted_style_request(s3.virtual_hosted_style).with_retry(retry).with_client_options(client))
}

#[derive(Debug, Default)]
struct Profile {
    key: Option<String>,
    secret: Option<String>,
    token: Option<String>,
    region: Option<String>,
}

/// `AWS_PROFILE` (or `default`) from the shared credentials and config files.
fn aws_profile() -> Option<Profile> {
    let home = std::env::var_os("HOME").map(PathBuf::from)?;
    let name = std::env::var("AWS_PROFILE").ok().filter(|v| !v.is_empty()).unwrap_or_else(|| "default".into());
    let creds_path = std::env::var_os("AWS_SHARED_CREDENTIALS_FILE").map(PathBuf::from).unwrap_or_else(|| home.join(".aws/credentials"));
    let config_path = std::env::var_os("AWS_CONFIG_FILE").map(PathBuf::from).unwrap_or_else(|| home.join(".aws/config"));
    let creds = std::fs::read_to_string(creds_path).ok().map(|s| ini_section(&s, &name)).unwrap_or_default();
    let config_section = if name == "default" { name.clone() } else { format!("profile {name}") };
    let config = std::fs::read_to_string(config_path).ok().map(|s| ini_section(&s, &config_section)).unwrap_or_default();
    let get = |v: &[(String, String)], k: &str| v.iter().find(|(kk, _)| kk == k).map(|(_, vv)| vv.clone());
    let p = Profile {
        key: get(&creds, "aws_access_key_id").or_else(|| get(&config, "aws_access_key_id")),
        secret: get(&creds, "aws_secret_access_key").or_else(|| get(&config, "aws_secret_access_key")),
        token: get(&creds, "aws_session_token").or_else(|| get(&config, "aws_session_token")),
        region: get(&config, "region"),
    };
    (p.key.is_some() || p.region.is_some()).then_some(p)
}

/// `key = value` pairs of `[section]` in an INI text.
fn ini_section(text: &str, section: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut inside = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with('#') || line.starts_with(';') || line.is_empty() {
            continue;
        }
        if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            inside = s.trim() == section;
        } else if inside && let Some((k, v)) = line.split_once('=') {
            out.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
    }
    out
}

/// One line: the store's error with its causes, without the request dump.
pub fn describe(e: &object_store::Error) -> String {
    let hint = match e {
        object_store::Error::NotFound { .. } => Some("not found (a missing bucket?)"),
        object_store::Error::PermissionDenied { .. } => Some("permission denied"),
        object_store::Error::Unauthenticated { .. } => Some("credentials refused"),
        _ => None,
    };
    let mut parts: Vec<String> = Vec::new();
    let mut cur: Option<&dyn std::error::Error> = Some(e);
    while let Some(err) = cur {
        let s = err.to_string().split_whitespace().collect::<Vec<_>>().join(" ");
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
        cur = err.source();
    }
    let mut line = parts.join(": ");
    if line.len() > 400 {
        let mut cut = 400;
        while !line.is_char_boundary(cut) {
            cut -= 1;
        }
        line.truncate(cut);
        line.push('…');
    }
    match hint {
        Some(h) => format!("{h}: {line}"),
        None => line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_with_clear_errors() {
        assert_eq!(Target::parse("s3://b/p/q/").unwrap(), Target::S3 { bucket: "b".into(), prefix: "p/q".into() });
        assert_eq!(Target::parse("s3://b").unwrap(), Target::S3 { bucket: "b".into(), prefix: "".into() });
        assert!(Target::parse("s3:///x").unwrap_err().to_string().contains("no bucket"));
        assert!(Target::parse("gs://b/x").unwrap_err().to_string().contains("unsupported scheme gs://"));
        assert_eq!(Target::parse("/tmp/lake").unwrap(), Target::Dir("/tmp/lake".into()));
    }

    #[test]
    fn keys_are_hive_partitioned_by_utc_date_and_node() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(&Target::Dir(dir.path().to_owned()), &S3Options::default(), true).unwrap();
        // 2025-11-17T14:03:00Z
        let k = lake.segment_key("net_conn", 1_763_388_180_000_000_000, "node-1", "net_conn-20251117T140300-000000000");
        assert_eq!(k.as_ref(), "net_conn/date=2025-11-17/node=node-1/net_conn-20251117T140300-000000000.parquet");
        assert_eq!(lake.snapshot_key("pods", "node-1").as_ref(), "pods/node-1.parquet");
        let s3 = Lake { store: Arc::new(object_store::memory::InMemory::new()), root: ObjPath::from("a/b"), target: Target::parse("s3://bkt/a/b").unwrap() };
        assert_eq!(s3.segment_key("ocsf/network_activity", 1_763_388_180_000_000_000, "n", "x").as_ref(), "a/b/ocsf/network_activity/date=2025-11-17/node=n/x.parquet");
        assert!(check_node_name("a/b").unwrap_err().to_string().contains("node name"));
    }

    #[test]
    fn a_segment_object_is_written_once_and_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(&Target::Dir(dir.path().join("lake")), &S3Options::default(), true).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let key = ObjPath::from("t/date=2026-01-01/node=n/x.parquet");
        assert_eq!(rt.block_on(lake.put_new(&key, Bytes::from_static(b"abc"))).unwrap(), Put::Written);
        assert_eq!(rt.block_on(lake.put_new(&key, Bytes::from_static(b"abc"))).unwrap(), Put::AlreadyThere);
        let e = rt.block_on(lake.put_new(&key, Bytes::from_static(b"abcd"))).unwrap_err();
        assert!(e.to_string().contains("already exists with 3 bytes"), "{e}");
        assert_eq!(std::fs::read(dir.path().join("lake").join(key.as_ref())).unwrap(), b"abc");
        let snap = ObjPath::from("pods/n.parquet");
        assert_eq!(rt.block_on(lake.put_if_changed(&snap, Bytes::from_static(b"1"))).unwrap(), Put::Written);
        assert_eq!(rt.block_on(lake.put_if_changed(&snap, Bytes::from_static(b"1"))).unwrap(), Put::AlreadyThere);
        assert_eq!(rt.block_on(lake.put_if_changed(&snap, Bytes::from_static(b"2"))).unwrap(), Put::Written);
    }

    #[test]
    fn profiles_come_from_their_ini_section() {
        let text = "[default]\naws_access_key_id = A\n[other]\naws_access_key_id=B\naws_secret_access_key = S\n";
        assert_eq!(ini_section(text, "other"), vec![("aws_access_key_id".into(), "B".into()), ("aws_secret_access_key".into(), "S".into())]);
        assert_eq!(ini_section(text, "none"), vec![]);
    }

}
