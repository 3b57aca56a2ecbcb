//! The API over HTTP: where it is, the key, and errors turned into one clear line.

use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, bail};
use serde_json::Value;

/// The config file's settings.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    url: Option<String>,
    api_key: Option<String>,
}

/// An authenticated client of one API.
pub(crate) struct Client {
    base: String,
    key: String,
    http: reqwest::Client,
}

fn default_config() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("SENTINELA_CONFIG") {
        return Some(PathBuf::from(path));
    }
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".config")))?;
    Some(base.join("sentinela/cli.toml"))
}

impl Client {
    /// The API's address and key from the flags, the environment and the config file.
    pub(crate) fn from_environment(
        url: Option<&str>,
        config: Option<&Path>,
    ) -> anyhow::Result<Self> {
        let config_path = config.map(Path::to_path_buf).or_else(default_config);
        let file = match &config_path {
            Some(path) if path.exists() || config.is_some() => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read the config file {}", path.display()))?;
                warn_if_readable_by_others(path);
                toml::from_str::<ConfigFile>(&text)
                    .with_context(|| format!("the config file {} is not valid", path.display()))?
            }
            _ => ConfigFile::default(),
        };
        let base = url
            .map(str::to_owned)
            .or_else(|| {
                std::env::var("SENTINELA_URL")
                    .ok()
                    .filter(|u| !u.is_empty())
            })
            .or(file.url)
            .unwrap_or_else(|| "http://127.0.0.1:8000".to_owned());
        let key = std::env::var("SENTINELA_API_KEY")
            .ok()
            .filter(|k| !k.is_empty())
            .or(file.api_key)
            .ok_or_else(|| {
                anyhow!(
                    "no API key: set SENTINELA_API_KEY, or api_key in {}",
                    config_path.map_or("the config file".into(), |p| p.display().to_string())
                )
            })?;
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            key,
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(60))
                .build()?,
        })
    }

    /// A JSON request; the answer's JSON (`null` for 204).
    pub(crate) async fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        self.send_with(method, path, body, None).await
    }

    /// [`Self::send`] with one extra header.
    pub(crate) async fn send_with(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        header: Option<(&str, &str)>,
    ) -> anyhow::Result<Value> {
        let response = self.request(method, path, body, header).await?;
        if response.status() == reqwest::StatusCode::NO_CONTENT {
            return Ok(Value::Null);
        }
        response
            .json()
            .await
            .with_context(|| format!("{method} {path}: the answer is not JSON"))
    }

    /// A GET of a file.
    pub(crate) async fn bytes(&self, path: &str) -> anyhow::Result<Vec<u8>> {
        let response = self.request("GET", path, None, None).await?;
        Ok(response.bytes().await?.to_vec())
    }

    /// Every item of a cursor-paged list (`path` already has its query).
    pub(crate) async fn all_pages(&self, path: &str) -> anyhow::Result<Vec<Value>> {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let page_path = match &cursor {
                Some(c) => format!("{path}&cursor={c}"),
                None => path.to_owned(),
            };
            let page = self.send("GET", &page_path, None).await?;
            items.extend(page["items"].as_array().into_iter().flatten().cloned());
            match page["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => return Ok(items),
            }
        }
    }

    async fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        header: Option<(&str, &str)>,
    ) -> anyhow::Result<reqwest::Response> {
        let method: reqwest::Method = method.parse()?;
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.key);
        if let Some(body) = body {
            request = request.json(&strip_nulls(body));
        }
        if let Some((name, value)) = header {
            request = request.header(name, value);
        }
        let response = request
            .send()
            .await
            .map_err(|e| anyhow!("cannot reach the API at {}: {}", self.base, root_cause(&e)))?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let problem: Value = response.json().await.unwrap_or(Value::Null);
        bail!("{}", describe(status, &problem))
    }
}

/// Absent, not `null`: the CLI's unset options are not sent.
fn strip_nulls(body: Value) -> Value {
    match body {
        Value::Object(map) => {
            Value::Object(map.into_iter().filter(|(_, v)| !v.is_null()).collect())
        }
        other => other,
    }
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// A problem detail as one line: what, then each field at fault.
fn describe(status: reqwest::StatusCode, problem: &Value) -> String {
    let detail = problem["detail"].as_str().unwrap_or("no detail");
    let code = problem["code"].as_str().unwrap_or("error");
    let mut line = format!("{detail} ({} {code})", status.as_u16());
    if status == reqwest::StatusCode::TOO_MANY_REQUESTS
        && let Some(hint) = problem["hint"].as_str()
    {
        line.push_str(&format!("; {hint}"));
    }
    line
}

#[cfg(unix)]
fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        eprintln!(
            "sentinela: warning: {} holds an API key and others can read it (chmod 600 it)",
            path.display()
        );
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_: &Path) {}
