//! A typed client for the server's `/api/v1`: it sends the bearer token, and
//! turns the API's error body into `CliError::Api`.

use std::path::Path;
use std::time::Duration;

use ota_api::error::ErrorBody;
use reqwest::header::CONTENT_TYPE;
use serde::de::DeserializeOwned;
use serde_json::Value;
use url::Url;

use crate::config::Credentials;
use crate::error::{ApiFailure, CliError, Result};

/// Longer than the server's own request deadline (30 s by default), so its
/// `503 timeout` answer arrives rather than a client-side cut.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Client {
    http: reqwest::Client,
    base: Url,
    token: String,
}

/// A successful answer: its status (a repeated upload answers 200, a new one 201) and body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

impl Answer {
    /// The body as one of the API's resources.
    pub fn parse<T: DeserializeOwned>(&self, url: &str) -> Result<T> {
        parse(url, self.status, self.body.clone())
    }
}

/// A JSON value as a resource; a body of another shape is an unexpected answer.
pub fn parse<T: DeserializeOwned>(url: &str, status: u16, body: Value) -> Result<T> {
    serde_json::from_value(body).map_err(|e| CliError::UnexpectedAnswer {
        url: url.to_owned(),
        status,
        reason: format!("not the documented shape: {e}"),
    })
}

impl Client {
    pub fn new(credentials: Credentials) -> Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("ota-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| CliError::invalid(format!("HTTP client: {e}")))?;
        let base = credentials.server;
        if base.cannot_be_a_base() {
            return Err(CliError::BadServer { url: base.to_string(), reason: "not a base URL".into() });
        }
        Ok(Self { http, base, token: credentials.token })
    }

    /// The server's base URL, as given.
    pub fn server(&self) -> &str {
        self.base.as_str().trim_end_matches('/')
    }

    /// `<base>/api/v1/<segments>`, each segment percent-encoded (device ids are the user's).
    pub fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(["api", "v1"]).extend(segments);
        }
        url
    }

    pub async fn get(&self, segments: &[&str], query: &[(&str, String)]) -> Result<Value> {
        let url = self.url(segments);
        let request = self.http.get(url.clone()).query(query).timeout(REQUEST_TIMEOUT);
        Ok(self.send(request, &url).await?.body)
    }

    /// A POST with an optional JSON body (the lifecycle routes take none or `{"reason"}`).
    pub async fn post(&self, segments: &[&str], body: Option<&Value>) -> Result<Answer> {
        let url = self.url(segments);
        let mut request = self.http.post(url.clone()).timeout(REQUEST_TIMEOUT);
        if let Some(body) = body {
            request = request.json(body);
        }
        self.send(request, &url).await
    }

    /// `POST /firmware`: the `metadata` part, then the image streamed from disk.
    pub async fn upload_firmware(&self, metadata: &Value, file: &Path) -> Result<Answer> {
        let url = self.url(&["firmware"]);
        let (body, length) = stream_file(file).await?;
        let filename = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "image".into());
        let mime = |part: reqwest::multipart::Part, kind: &str| {
            part.mime_str(kind).map_err(|e| CliError::invalid(format!("multipart part type {kind}: {e}")))
        };
        let form = reqwest::multipart::Form::new()
            .part("metadata", mime(reqwest::multipart::Part::text(metadata.to_string()), "application/json")?)
            .part(
                "file",
                mime(reqwest::multipart::Part::stream_with_length(body, length), "application/octet-stream")?
                    .file_name(filename),
            );
        self.send(self.http.post(url.clone()).multipart(form), &url).await
    }

    /// `POST /devices:import` with the file as the body, in the given media type.
    pub async fn import_devices(&self, file: &Path, content_type: &str, partial: bool) -> Result<Answer> {
        let url = self.url(&["devices:import"]);
        let (body, _) = stream_file(file).await?;
        let mut request = self.http.post(url.clone()).header(CONTENT_TYPE, content_type).body(body);
        if partial {
            request = request.query(&[("partial", "true")]);
        }
        self.send(request, &url).await
    }

    async fn send(&self, request: reqwest::RequestBuilder, url: &Url) -> Result<Answer> {
        let unreachable = |source| CliError::Unreachable { url: self.server().to_owned(), source };
        let response = request.bearer_auth(&self.token).send().await.map_err(unreachable)?;
        let status = response.status().as_u16();
        let bytes = response.bytes().await.map_err(unreachable)?;
        let unexpected = |reason: String| CliError::UnexpectedAnswer { url: url.to_string(), status, reason };
        if (200..300).contains(&status) {
            if bytes.iter().all(u8::is_ascii_whitespace) {
                return Ok(Answer { status, body: Value::Null });
            }
            let body = serde_json::from_slice(&bytes).map_err(|e| unexpected(format!("not JSON: {e}")))?;
            return Ok(Answer { status, body });
        }
        match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(body) => Err(CliError::Api(ApiFailure { status, body })),
            Err(_) => Err(unexpected(snippet(&bytes))),
        }
    }
}

/// A file as a request body, read as it is sent (an image is never held in memory whole).
async fn stream_file(path: &Path) -> Result<(reqwest::Body, u64)> {
    let reading = |source| CliError::File { what: "reading", path: path.to_owned(), source };
    let file = tokio::fs::File::open(path).await.map_err(reading)?;
    let metadata = file.metadata().await.map_err(reading)?;
    if !metadata.is_file() {
        return Err(CliError::invalid(format!("{} is not a file", path.display())));
    }
    Ok((reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(file)), metadata.len()))
}

/// The start of a body that is not the API's error shape, for the message.
fn snippet(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim();
    if text.is_empty() {
        return "empty body".into();
    }
    let mut cut: String = text.chars().take(200).collect();
    if cut.len() < text.len() {
        cut.push('…');
    }
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(base: &str) -> Client {
        let server = crate::config::parse_server(base).expect("server");
        Client::new(Credentials { server, token: "t".into() }).expect("client")
    }

    #[test]
    fn urls_keep_the_base_path_and_encode_ids() {
        assert_eq!(client("http://h:1").url(&["devices", "a b/c"]).as_str(), "http://h:1/api/v1/devices/a%20b%2Fc");
        assert_eq!(client("https://h/ota/").url(&["devices:import"]).as_str(), "https://h/ota/api/v1/devices:import");
    }

    #[test]
    fn a_body_that_is_no_error_shape_is_quoted_shortly() {
        assert_eq!(snippet(b"  "), "empty body");
        assert_eq!(snippet("x".repeat(300).as_bytes()).chars().count(), 201);
    }
}
