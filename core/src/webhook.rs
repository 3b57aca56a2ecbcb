//! Completion webhooks: when a search that named a `webhook_url` finishes, its outcome is POSTed
//! there as JSON, signed with the search's `webhook_secret`.
//!
//! The receiver checks `X-Sentinela-Signature: sha256=<hex>`, the HMAC-SHA256 (RFC 2104) of
//! `<X-Sentinela-Timestamp>.<body>` under the secret, and rejects old timestamps (replays).
//! Deliveries are made by the scheduler's `webhooks` job, never by a worker: a slow or dead
//! receiver costs no analysis time. See docs/evidence.md.

use std::net::IpAddr;
use std::time::Duration;

use sha2::{Digest, Sha256};

/// HMAC-SHA256 of `message` under `key`, lowercase hex (RFC 2104, block size 64).
pub fn hmac_sha256_hex(key: &[u8], message: &[u8]) -> String {
    const BLOCK: usize = 64;
    let mut block = [0u8; BLOCK];
    if key.len() > BLOCK {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.map(|b| b ^ byte);
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    let outer = Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize();
    hex::encode(outer)
}

/// The `X-Sentinela-Signature` value of `body` sent at `timestamp` (seconds since the epoch).
pub fn signature(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let mut message = format!("{timestamp}.").into_bytes();
    message.extend_from_slice(body);
    format!("sha256={}", hmac_sha256_hex(secret.as_bytes(), &message))
}

/// Checks a webhook URL given with a search: `http` or `https`, a host, no credentials.
///
/// # Errors
/// Why it cannot be used.
pub fn check_url(url: &str) -> Result<(), String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("not a URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err("must be an http:// or https:// URL".into());
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err("has no host".into());
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("must not carry credentials (the payload is signed instead)".into());
    }
    Ok(())
}

/// Whether an address is private, loopback, link-local or otherwise not on the public internet
/// (where a webhook must not be sent unless the operator allows it: the platform's own network).
fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.octets()[0] == 100 && (v4.octets()[1] & 0xc0) == 64 // 100.64/10
        }
        IpAddr::V6(v6) => {
            v6.is_loopback()
                || v6.is_unspecified()
                || (v6.segments()[0] & 0xfe00) == 0xfc00 // unique local
                || (v6.segments()[0] & 0xffc0) == 0xfe80 // link local
                || v6.to_ipv4_mapped().is_some_and(|v4| is_internal(IpAddr::V4(v4)))
        }
    }
}

/// POSTs `body` to `url` signed with `secret`, within `timeout`. With `allow_internal` false, a
/// host that resolves to an internal address is refused before anything is sent (a city key
/// must not make the platform call its own network), and redirects are not followed.
///
/// # Errors
/// Why the delivery failed (refused address, connection, timeout, non-2xx status).
pub async fn deliver(
    client: &reqwest::Client,
    url: &str,
    secret: &str,
    event_id: &str,
    body: Vec<u8>,
    allow_internal: bool,
    timeout: Duration,
) -> Result<(), String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("not a URL: {e}"))?;
    if !allow_internal {
        let host = parsed.host_str().unwrap_or_default().to_owned();
        let port = parsed.port_or_known_default().unwrap_or(443);
        let addrs: Vec<_> = tokio::net::lookup_host((host.trim_matches(['[', ']']), port))
            .await
            .map_err(|e| format!("cannot resolve {host}: {e}"))?
            .collect();
        if addrs.iter().any(|a| is_internal(a.ip())) {
            return Err(format!(
                "{host} resolves to an internal address; webhooks go to public hosts only"
            ));
        }
    }
    let timestamp = chrono::Utc::now().timestamp();
    let response = client
        .post(parsed)
        .timeout(timeout)
        .header("Content-Type", "application/json")
        .header("X-Sentinela-Event", "search.finished")
        .header("X-Sentinela-Delivery", event_id)
        .header("X-Sentinela-Timestamp", timestamp.to_string())
        .header("X-Sentinela-Signature", signature(secret, timestamp, &body))
        .body(body)
        .send()
        .await
        .map_err(|e| format!("no answer: {e}"))?;
    let status = response.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("answered {status}"))
    }
}

/// The HTTP client webhook deliveries use: no redirects, rustls.
///
/// # Errors
/// When the TLS backend cannot be initialised.
pub fn client() -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("sentinela-webhook/", env!("CARGO_PKG_VERSION")))
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231() {
        // RFC 4231, test cases 2 and 6 (a key longer than the block).
        assert_eq!(
            hmac_sha256_hex(b"Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(
            hmac_sha256_hex(
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            ),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn urls_are_checked_and_internal_addresses_recognised() {
        assert!(check_url("https://hooks.example.com/sentinela").is_ok());
        assert!(check_url("ftp://x/").is_err());
        assert!(check_url("https://user:pw@example.com/").is_err());
        assert!(check_url("not a url").is_err());
        for internal in [
            "127.0.0.1",
            "10.1.2.3",
            "169.254.169.254",
            "::1",
            "fd00::1",
            "100.64.0.1",
        ] {
            assert!(is_internal(internal.parse().unwrap()), "{internal}");
        }
        assert!(!is_internal("8.8.8.8".parse().unwrap()));
    }
}
