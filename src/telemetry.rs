//! Metrics (Prometheus text format), request ids, access logs and the log format.

use std::collections::HashMap;
use std::future::Future;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::MatchedPath;
use axum::response::Response;
use http::{HeaderValue, Request};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::fmt::format::{Format, Full, Json, Writer};
use tracing_subscriber::fmt::time::FormatTime;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

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

/// Counts a request and records its duration by endpoint and status. Once the recorder is
/// installed the handles are kept, per thread: the macros build and look up a labelled key on
/// every call (2.8 % of a cached verify's CPU in a profile), and a map shared between threads
/// costs its lock's and the handles' reference counts, cache lines every core writes. Before,
/// nothing is kept, since a handle taken then would stay a no-op. The status label is
/// interned only when handles are made.
fn count_request(endpoint: &'static str, status: http::StatusCode, elapsed: Duration) {
    type Handles = (metrics::Counter, metrics::Histogram);
    type Kept = HashMap<(&'static str, u16), Handles, foldhash::fast::RandomState>;
    thread_local! {
        static KEPT: std::cell::RefCell<Kept> = std::cell::RefCell::default();
    }
    let make = || -> Handles {
        let status = intern(status.as_str());
        (
            metrics::counter!("vedauth_http_requests_total", "endpoint" => endpoint, "status" => status),
            metrics::histogram!("vedauth_http_request_duration_seconds", "endpoint" => endpoint),
        )
    };
    let record = |(count, duration): &Handles| {
        count.increment(1);
        duration.record(elapsed.as_secs_f64());
    };
    if !matches!(HANDLE.get(), Some(Some(_))) {
        return record(&make());
    }
    KEPT.with_borrow_mut(|kept| {
        record(kept.entry((endpoint, status.as_u16())).or_insert_with(make))
    });
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
#[derive(Clone)]
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

/// Every request: its id on every log line written while it is handled ([`InRequest`]), the
/// `X-Request-Id` response header, request metrics by endpoint and status, and one access-log
/// line. Taken from the request before it is handed on ([`Observation::start`]), finished
/// with its response ([`Observation::run`]).
pub struct Observation {
    id: RequestId,
    endpoint: &'static str,
    method: http::Method,
    start: Instant,
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
        Self {
            id,
            endpoint,
            method: req.method().clone(),
            start: Instant::now(),
        }
    }

    /// Runs the request's handling with its id current, then counts and logs its response.
    pub async fn run(self, handling: impl Future<Output = Response>) -> Response {
        let Self {
            id,
            endpoint,
            method,
            start,
        } = self;
        // Current around each poll, as an entered span would be.
        let mut handling = std::pin::pin!(handling);
        let mut res = std::future::poll_fn(|cx| {
            let _in = InRequest::enter(&id);
            handling.as_mut().poll(cx)
        })
        .await;
        let elapsed = start.elapsed();
        let status = res.status().as_u16();
        count_request(endpoint, res.status(), elapsed);
        if let Some(v) = id.header() {
            res.headers_mut().insert(REQUEST_ID, v);
        }
        let quiet = quiet(endpoint, status);
        // A line at debug is usually off: when no directive can enable debug anywhere (the
        // subscriber's maximum level), the id is not made current for it either.
        if quiet && tracing::level_filters::LevelFilter::current() < tracing::Level::DEBUG {
            return res;
        }
        let _in = InRequest::enter(&id);
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
    let time = tracing_subscriber::fmt::time::SystemTime;
    let _ = match format {
        LogFormat::Human => builder.event_format(HumanFormat::new(time)).try_init(),
        LogFormat::Json => builder
            .json()
            .event_format(JsonFormat::new(time))
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

thread_local! {
    /// The request this thread is handling now, for the log formats ([`InRequest`]).
    static CURRENT: std::cell::Cell<Option<RequestId>> = const { std::cell::Cell::new(None) };
}

/// While alive, the lines this thread logs carry the request's id, written as a span named
/// `request` with the field `request_id` would be. A real span per request cost about 2,200
/// instructions (the registry's slot, its fields formatted into a string when it opened, and
/// entering, leaving and closing it), on every request, for lines that are rare; this costs
/// a thread-local store around each poll, and the formatting only when a line is written.
struct InRequest(Option<RequestId>);

impl InRequest {
    fn enter(id: &RequestId) -> Self {
        Self(
            CURRENT
                .try_with(|c| c.replace(Some(id.clone())))
                .ok()
                .flatten(),
        )
    }
}

impl Drop for InRequest {
    fn drop(&mut self) {
        let before = self.0.take();
        let _ = CURRENT.try_with(|c| c.set(before));
    }
}

fn current_request() -> Option<RequestId> {
    CURRENT
        .try_with(|c| {
            let id = c.take();
            let copy = id.clone();
            c.set(id);
            copy
        })
        .ok()
        .flatten()
}

/// The human format: tracing's default, and inside a request the request's id where the
/// default writes a root span `request{request_id=<id>}:`, in the same colours (the test
/// `the_request_id_is_written_as_a_span_would_be` compares both, with and without colours).
struct HumanFormat<T> {
    whole: Format<Full, T>,
    /// The default after the level: spans, target, fields.
    rest: Format<Full, ()>,
    time: T,
}

impl<T: FormatTime + Clone> HumanFormat<T> {
    fn new(time: T) -> Self {
        Self {
            whole: Format::default().with_timer(time.clone()),
            rest: Format::default().without_time().with_level(false),
            time,
        }
    }
}

impl<S, N, T> FormatEvent<S, N> for HumanFormat<T>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    T: FormatTime,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let Some(id) = current_request() else {
            return self.whole.format_event(ctx, w, event);
        };
        let ansi = w.has_ansi_escapes();
        let [bold, dim, italic, reset] = if ansi {
            ["\x1b[1m", "\x1b[2m", "\x1b[3m", "\x1b[0m"]
        } else {
            [""; 4]
        };
        w.write_str(dim)?;
        if self.time.format_time(&mut w).is_err() {
            w.write_str("<unknown time>")?;
        }
        let (colour, level) = match *event.metadata().level() {
            tracing::Level::TRACE => ("\x1b[35m", "TRACE"),
            tracing::Level::DEBUG => ("\x1b[34m", "DEBUG"),
            tracing::Level::INFO => ("\x1b[32m", " INFO"),
            tracing::Level::WARN => ("\x1b[33m", " WARN"),
            tracing::Level::ERROR => ("\x1b[31m", "ERROR"),
        };
        let colour = if ansi { colour } else { "" };
        write!(
            w,
            "{reset} {colour}{level}{reset} {bold}request{reset}{bold}{{{reset}\
             {italic}request_id{reset}{dim}={reset}{id}{bold}}}{reset}{dim}:{reset}"
        )?;
        // Other spans follow the request's directly; the default puts one space after the last.
        if ctx.event_scope().is_none_or(|mut s| s.next().is_none()) {
            w.write_char(' ')?;
        }
        self.rest.format_event(ctx, w, event)
    }
}

/// The JSON format: tracing's, with the current span shown and no span list; inside a request
/// and outside any other span, the request's id as the default shows a current span `request`
/// (`"span":{"request_id":"<id>","name":"request"}`, the object's last member).
struct JsonFormat<T>(Format<Json, T>);

impl<T: FormatTime> JsonFormat<T> {
    fn new(time: T) -> Self {
        Self(
            Format::default()
                .json()
                .with_current_span(true)
                .with_span_list(false)
                .with_timer(time),
        )
    }
}

impl<S, N, T> FormatEvent<S, N> for JsonFormat<T>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    T: FormatTime,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        // Inside another span the default shows that one, as it would have shown the innermost.
        let in_span = event
            .parent()
            .and_then(|id| ctx.span(id))
            .or_else(|| ctx.lookup_current())
            .is_some();
        let Some(id) = (!in_span).then(current_request).flatten() else {
            return self.0.format_event(ctx, w, event);
        };
        let mut line = String::new();
        self.0.format_event(ctx, Writer::new(&mut line), event)?;
        let object = line.strip_suffix("}\n").ok_or(std::fmt::Error)?;
        let id = serde_json::to_string(&id.to_string()).map_err(|_| std::fmt::Error)?;
        writeln!(
            w,
            "{object},\"span\":{{\"request_id\":{id},\"name\":\"request\"}}}}"
        )
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

    /// A fixed clock for the lines' timestamps.
    #[derive(Clone)]
    struct At;

    impl FormatTime for At {
        fn format_time(&self, w: &mut Writer<'_>) -> std::fmt::Result {
            w.write_str("2026-12-02T10:00:00.000001Z")
        }
    }

    /// Lines in a request, around another span, and outside: inside a real span `request`
    /// when `real_span`, else with the id current as a request's handling has it.
    fn log(real_span: bool) {
        let long = "0123456789abcdef".repeat(8);
        for id in [
            RequestId::Made(uuid::Uuid::from_u128(0x0123_4567_89ab_cdef)),
            RequestId::Given(HeaderValue::from_static("req-42\"x\\y")),
            RequestId::Given(HeaderValue::from_str(&long).unwrap_or(HeaderValue::from_static("x"))),
        ] {
            let span = real_span.then(|| tracing::info_span!("request", request_id = %id));
            let _entered = span.as_ref().map(|s| s.enter());
            let _in = (!real_span).then(|| InRequest::enter(&id));
            tracing::info!(method = "GET", status = 200, elapsed_ms = 0.5, "request");
            tracing::debug!(n = 1, "quiet");
            tracing::info_span!("inner", request_id = "a str", n = 1)
                .in_scope(|| tracing::warn!(error = %"boom", "inside"));
            tracing::error!("after");
        }
        tracing::info_span!("other", request_id = 7).in_scope(|| tracing::info!("x"));
        tracing::info!("outside");
    }

    fn capture(format: LogFormat, ansi: bool, real_span: bool) -> String {
        use tracing::subscriber::with_default;
        let buf = Buf::default();
        let out = buf.clone();
        let builder = tracing_subscriber::fmt()
            .with_ansi(ansi)
            .with_max_level(tracing::Level::DEBUG)
            .with_writer(move || out.clone());
        let run = || log(real_span);
        match (format, real_span) {
            (LogFormat::Human, true) => with_default(builder.with_timer(At).finish(), run),
            (LogFormat::Human, false) => {
                with_default(builder.event_format(HumanFormat::new(At)).finish(), run)
            }
            (LogFormat::Json, true) => with_default(
                builder
                    .json()
                    .with_current_span(true)
                    .with_span_list(false)
                    .with_timer(At)
                    .finish(),
                run,
            ),
            (LogFormat::Json, false) => with_default(
                builder.json().event_format(JsonFormat::new(At)).finish(),
                run,
            ),
        }
        let text = buf.0.lock().map(|v| v.clone()).unwrap_or_default();
        String::from_utf8(text).unwrap_or_default()
    }

    #[test]
    fn the_request_id_is_written_as_a_span_would_be() {
        for (format, ansi) in [
            (LogFormat::Human, false),
            (LogFormat::Human, true),
            (LogFormat::Json, false),
        ] {
            let ours = capture(format, ansi, false);
            assert_eq!(ours, capture(format, ansi, true), "{format:?}, ansi {ansi}");
            assert_eq!(ours.lines().count(), 3 * 4 + 2, "{ours}");
            // JSON shows the innermost span only: the line inside `inner` has not the id.
            let with_id = if format == LogFormat::Json { 3 } else { 4 };
            assert_eq!(ours.matches("req-42").count(), with_id, "{ours}");
        }
        let plain = capture(LogFormat::Human, false, false);
        assert!(
            plain.contains(concat!(
                "2026-12-02T10:00:00.000001Z  INFO request{request_id=00000000-0000-0000-",
                "0123-456789abcdef}: vedauth::telemetry::tests: request method=\"GET\""
            )),
            "{plain}"
        );
        assert!(
            plain.contains("request{request_id=req-42\"x\\y}:inner{request_id=\"a str\" n=1}: "),
            "{plain}"
        );
        let json = capture(LogFormat::Json, false, false);
        let first: serde_json::Value =
            serde_json::from_str(json.lines().next().unwrap_or_default()).unwrap_or_default();
        assert_eq!(
            first["span"],
            serde_json::json!({
                "request_id": "00000000-0000-0000-0123-456789abcdef",
                "name": "request",
            })
        );
        assert_eq!(
            json.lines().last().map(|l| l.contains("\"span\"")),
            Some(false)
        );
    }
}
