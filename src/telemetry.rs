//! Metrics (Prometheus text format), request ids, access logs and the log format.

use std::collections::HashMap;
use std::future::Future;
use std::sync::OnceLock;
use std::time::Instant;

use axum::body::Body;
use axum::extract::MatchedPath;
use axum::response::Response;
use http::{HeaderValue, Request};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process-wide recorder once; later calls return the same handle.
pub fn metrics_handle() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let buckets = [
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ];
            PrometheusBuilder::new()
                .set_buckets(&buckets)
                .ok()?
                .install_recorder()
                .map_err(|e| tracing::warn!(error = %e, "metrics recorder not installed"))
                .ok()
        })
        .clone()
}

/// Folds recorded histogram samples into their buckets. The recorder keeps every sample until
/// this runs (or `/metrics` is scraped), so the server calls it periodically: without it an
/// unscraped server's memory grows with every request.
pub fn run_upkeep() {
    if let Some(Some(h)) = HANDLE.get() {
        h.run_upkeep();
    }
}

/// The request metrics' handles for an endpoint and status. Once the recorder is installed
/// they are kept: the macros build and look up a labelled key on every call (2.8 % of a cached
/// verify's CPU in a profile). Before, nothing is kept, since a handle taken then would stay
/// a no-op. The status label is interned only when handles are made.
fn request_metrics(
    endpoint: &'static str,
    status: http::StatusCode,
) -> (metrics::Counter, metrics::Histogram) {
    type Handles = (metrics::Counter, metrics::Histogram);
    type Kept = HashMap<(&'static str, u16), Handles, foldhash::fast::RandomState>;
    static KEPT: OnceLock<std::sync::RwLock<Kept>> = OnceLock::new();
    let make = || -> Handles {
        let status = intern(status.as_str());
        (
            metrics::counter!("vedauth_http_requests_total", "endpoint" => endpoint, "status" => status),
            metrics::histogram!("vedauth_http_request_duration_seconds", "endpoint" => endpoint),
        )
    };
    let key = (endpoint, status.as_u16());
    if !matches!(HANDLE.get(), Some(Some(_))) {
        return make();
    }
    let kept = KEPT.get_or_init(Default::default);
    if let Some(h) = kept.read().ok().and_then(|m| m.get(&key).cloned()) {
        return h;
    }
    let h = make();
    if let Ok(mut m) = kept.write() {
        m.insert(key, h.clone());
    }
    h
}

/// A `'static` copy of a label value, made once per distinct value: route patterns and status
/// codes are few, and a static label costs the metrics registry no allocation per request.
fn intern(s: &str) -> &'static str {
    type Seen = std::collections::HashSet<&'static str, foldhash::fast::RandomState>;
    static SEEN: OnceLock<std::sync::RwLock<Seen>> = OnceLock::new();
    let seen = SEEN.get_or_init(Default::default);
    if let Some(v) = seen.read().ok().and_then(|set| set.get(s).copied()) {
        return v;
    }
    match seen.write() {
        Ok(mut set) => match set.get(s) {
            Some(v) => v,
            None => {
                let v: &'static str = Box::leak(s.to_owned().into_boxed_str());
                set.insert(v);
                v
            }
        },
        // A poisoned lock only means another thread panicked mid-insert: label unknown.
        Err(_) => "unknown",
    }
}

const REQUEST_ID: http::HeaderName = http::HeaderName::from_static("x-request-id");

/// The request id: the client's `X-Request-Id` if it is sane, else a new one. Kept as it
/// came (a header value or the UUID's bytes): formatted only where it is written.
enum RequestId {
    Given(HeaderValue),
    Made(uuid::Uuid),
}

impl RequestId {
    fn of(req: &Request<Body>) -> Self {
        match req.headers().get(REQUEST_ID).filter(|v| {
            let b = v.as_bytes();
            !b.is_empty() && b.len() <= 128 && b.iter().all(u8::is_ascii_graphic)
        }) {
            Some(v) => Self::Given(v.clone()),
            // A v4 UUID from the thread-local generator: ids need to be unique, not secret,
            // and this saves a getrandom system call per request.
            None => Self::Made(uuid::Builder::from_random_bytes(rand::random()).into_uuid()),
        }
    }

    fn header(&self) -> Option<HeaderValue> {
        match self {
            Self::Given(v) => Some(v.clone()),
            Self::Made(u) => {
                let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
                HeaderValue::from_str(u.hyphenated().encode_lower(&mut buf)).ok()
            }
        }
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            // Checked in `of`: visible ASCII only.
            Self::Given(v) => f.write_str(v.to_str().unwrap_or_default()),
            Self::Made(u) => u.hyphenated().fmt(f),
        }
    }
}

/// Requests whose access-log line goes at debug, not info: probes, which would drown the log,
/// and the checks a resource server or gateway makes on every call it serves (successful
/// verifies, gateway checks and introspections: a line each would be most of the log and,
/// measured, a quarter of verify's cost). Refusals and every other endpoint are logged at
/// info; the request metrics count all of them.
fn quiet(endpoint: &str, status: u16) -> bool {
    match endpoint {
        "/healthz" | "/readyz" | "/metrics" => true,
        "/vedauth/authorize/verify"
        | "/gateway/check"
        | "/gateway/check/{*rest}"
        | "/oauth2/introspect" => status == 200,
        _ => false,
    }
}

/// A response extension naming why a request was refused, in the audit trail's words; the
/// access-log line carries it (the client sees only the documented text).
#[derive(Debug, Clone, Copy)]
pub struct Refusal(pub &'static str);

/// Every request: a span carrying its id (so every log line of the request has it), the
/// `X-Request-Id` response header, request metrics by endpoint and status, and one access-log
/// line. Taken from the request before it is handed on ([`Observation::start`]), finished
/// with its response ([`Observation::run`]).
pub struct Observation {
    id: RequestId,
    endpoint: &'static str,
    method: http::Method,
    start: Instant,
    span: tracing::Span,
}

impl Observation {
    /// `endpoint` names the route when the request did not pass the router (the hot lane,
    /// src/http/hot.rs); otherwise the router's matched path does.
    pub fn start(req: &Request<Body>, endpoint: Option<&'static str>) -> Self {
        let id = RequestId::of(req);
        let endpoint = endpoint.unwrap_or_else(|| {
            req.extensions()
                .get::<MatchedPath>()
                .map(|m| intern(m.as_str()))
                .unwrap_or("unmatched")
        });
        // Only the id in the span: the fmt layer formats span fields when the span opens, on
        // every request, while the method and endpoint are needed on the access-log line alone.
        let span = tracing::info_span!("request", request_id = %id);
        Self {
            id,
            endpoint,
            method: req.method().clone(),
            start: Instant::now(),
            span,
        }
    }

    /// Runs the request's handling inside its span, then counts and logs its response.
    pub async fn run(self, handling: impl Future<Output = Response>) -> Response {
        let Self {
            id,
            endpoint,
            method,
            start,
            span,
        } = self;
        // Entered around each poll, as `Instrumented` would, without its clone of the span and
        // without entering it once more to drop a future that has already finished.
        let mut handling = std::pin::pin!(handling);
        let mut res = std::future::poll_fn(|cx| span.in_scope(|| handling.as_mut().poll(cx))).await;
        let elapsed = start.elapsed();
        let status = res.status().as_u16();
        let (count, duration) = request_metrics(endpoint, res.status());
        count.increment(1);
        duration.record(elapsed.as_secs_f64());
        if let Some(v) = id.header() {
            res.headers_mut().insert(REQUEST_ID, v);
        }
        let quiet = quiet(endpoint, status);
        // A line at debug is usually off: when no directive can enable debug anywhere (the
        // subscriber's maximum level), the span is not entered for it either.
        if quiet && tracing::level_filters::LevelFilter::current() < tracing::Level::DEBUG {
            return res;
        }
        let _entered = span.enter();
        let ms = elapsed.as_secs_f64() * 1000.0;
        let cause = res.extensions().get::<Refusal>().map(|r| r.0);
        let method = method.as_str();
        if quiet {
            tracing::debug!(method, endpoint, status, elapsed_ms = ms, cause, "request");
        } else {
            tracing::info!(method, endpoint, status, elapsed_ms = ms, cause, "request");
        }
        res
    }
}

/// Log output: human-readable (default) or one JSON object per line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    #[default]
    Human,
    Json,
}

static LOG_GUARD: std::sync::Mutex<Option<tracing_appender::non_blocking::WorkerGuard>> =
    std::sync::Mutex::new(None);

/// Lines waiting for the log thread; past this, logging threads wait (lossless: nothing is
/// dropped). The queue's slots are allocated and touched at start: 16,384 of them were 512
/// KiB of an idle server's memory; the log thread drains it far faster than requests fill it.
const LOG_QUEUE: usize = 2048;

/// Stderr through a thread of its own (`tracing-appender`): each event is formatted on the
/// thread that logs it and handed over as one line; the log thread writes what has queued up
/// through a 64 KiB buffer and flushes when the queue runs dry. Under load that is one write for
/// many lines instead of one system call per line on the threads that serve requests.
fn log_writer() -> tracing_appender::non_blocking::NonBlocking {
    let out = std::io::BufWriter::with_capacity(64 * 1024, std::io::stderr());
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .buffered_lines_limit(LOG_QUEUE)
        .thread_name("vedauth-log")
        .finish(out);
    if let Ok(mut slot) = LOG_GUARD.lock() {
        *slot = Some(guard);
    }
    writer
}

/// Writes every line logged so far and stops the log thread (it waits at most about a second);
/// for shutdown, after the last line.
pub fn flush_logs() {
    let guard = LOG_GUARD.lock().ok().and_then(|mut g| g.take());
    drop(guard);
}

pub fn init_tracing(format: LogFormat) {
    // Once per process: a second log thread would replace the first one's guard.
    if tracing::dispatcher::has_been_set() {
        return;
    }
    let filter = tracing_subscriber::EnvFilter::try_from_env("VEDAUTH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Colour codes only for a person at a terminal, not in log files and collectors.
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(log_writer());
    let _ = match format {
        LogFormat::Human => builder.fmt_fields(Fields::default()).try_init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    };
    // A panic is a log event like any other: with JSON logs, a plain-text panic message on
    // stderr would be the one line a collector cannot parse.
    std::panic::set_hook(Box::new(|info| {
        let thread = std::thread::current();
        tracing::error!(
            thread = thread.name().unwrap_or("unnamed"),
            location = info.location().map(|l| l.to_string()),
            panic = panic_text(info.payload()),
            "panic"
        );
    }));
}

/// The request span's one field.
const REQUEST_ID_FIELD: &str = "request_id";

/// The human format's field formatter: tracing's default, with a short cut for the span every
/// request opens. The fmt layer formats a span's fields when the span opens, and the default
/// writes each name through its styling wrapper even when colours are off (919 instructions
/// per request in a callgrind profile). The short cut writes exactly what the default writes
/// for that one field without colours, `request_id=<id>`; making the span fell from 2,259 to
/// 1,879 instructions (test: `the_request_span_is_formatted_as_by_default`).
#[derive(Debug, Default)]
struct Fields(tracing_subscriber::fmt::format::DefaultFields);

impl<'w> tracing_subscriber::fmt::FormatFields<'w> for Fields {
    fn format_fields<R: tracing_subscriber::field::RecordFields>(
        &self,
        mut writer: tracing_subscriber::fmt::format::Writer<'w>,
        fields: R,
    ) -> std::fmt::Result {
        if !writer.has_ansi_escapes() {
            let mut lone = LoneRequestId::default();
            fields.record(&mut lone);
            if lone.0 == Some(true) {
                let mut out = WriteRequestId {
                    writer: &mut writer,
                    result: Ok(()),
                };
                fields.record(&mut out);
                return out.result;
            }
        }
        self.0.format_fields(writer, fields)
    }
}

/// Whether the fields are one, `request_id` (Some(true)).
#[derive(Default)]
struct LoneRequestId(Option<bool>);

impl tracing::field::Visit for LoneRequestId {
    fn record_debug(&mut self, field: &tracing::field::Field, _: &dyn std::fmt::Debug) {
        self.0 = Some(self.0.is_none() && field.name() == REQUEST_ID_FIELD);
    }
}

struct WriteRequestId<'a, 'w> {
    writer: &'a mut tracing_subscriber::fmt::format::Writer<'w>,
    result: std::fmt::Result,
}

impl tracing::field::Visit for WriteRequestId<'_, '_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        // Composed on the stack and written in one piece: the span's text then grows once
        // instead of once per part (1,200 instructions per request before; callgrind).
        use std::fmt::Write as _;
        let mut text = StackText::default();
        self.result = match write!(text, "{}={value:?}", field.name())
            .ok()
            .and_then(|()| text.as_str())
        {
            Some(t) => self.writer.write_str(t),
            // Longer than the buffer (a request id is at most 128 characters).
            None => write!(self.writer, "{}={value:?}", field.name()),
        };
    }
}

/// A short text formatted without allocating.
struct StackText {
    buf: [u8; 192],
    len: usize,
}

impl Default for StackText {
    fn default() -> Self {
        Self {
            buf: [0; 192],
            len: 0,
        }
    }
}

impl StackText {
    fn as_str(&self) -> Option<&str> {
        self.buf
            .get(..self.len)
            .and_then(|b| std::str::from_utf8(b).ok())
    }
}

impl std::fmt::Write for StackText {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        let dst = self.buf.get_mut(self.len..end).ok_or(std::fmt::Error)?;
        dst.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

fn panic_text(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(not text)")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            if let Ok(mut v) = self.0.lock() {
                v.extend_from_slice(b);
            }
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    const LONG_ID: &str = concat!(
        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
    );

    fn lines(with_short_cut: bool) -> String {
        let buf = Buf::default();
        let out = buf.clone();
        let builder = tracing_subscriber::fmt()
            .with_ansi(false)
            .without_time()
            .with_max_level(tracing::Level::DEBUG)
            .with_writer(move || out.clone());
        let log = || {
            let made = RequestId::Made(uuid::Uuid::from_u128(0x0123_4567_89ab_cdef));
            let given = RequestId::Given(HeaderValue::from_static("req-42 \"x\""));
            // Longer than the one-piece buffer: written the other way, to the same text.
            let long = RequestId::Given(HeaderValue::from_static(LONG_ID));
            for id in [made, given, long] {
                let span = tracing::info_span!("request", request_id = %id);
                let _in = span.enter();
                tracing::info!(method = "GET", status = 200, elapsed_ms = 0.5, "request");
                let inner = tracing::debug_span!("inner", request_id = "a str", n = 1);
                let _inner = inner.enter();
                tracing::warn!(error = %"boom", "inside");
            }
            tracing::info_span!("other", request_id = 7).in_scope(|| tracing::info!("x"));
        };
        if with_short_cut {
            tracing::subscriber::with_default(builder.fmt_fields(Fields::default()).finish(), log);
        } else {
            tracing::subscriber::with_default(builder.finish(), log);
        }
        let text = buf.0.lock().map(|v| v.clone()).unwrap_or_default();
        String::from_utf8(text).unwrap_or_default()
    }

    #[test]
    fn the_request_span_is_formatted_as_by_default() {
        let ours = lines(true);
        assert!(
            ours.contains("request{request_id=00000000-0000-0000-0123-456789abcdef}: "),
            "{ours}"
        );
        assert!(ours.contains("request{request_id=req-42 \"x\"}"), "{ours}");
        assert!(
            ours.contains(&format!("request{{request_id={LONG_ID}}}")),
            "{ours}"
        );
        assert_eq!(ours.lines().count(), 7, "{ours}");
        assert_eq!(ours, lines(false));
    }
}
