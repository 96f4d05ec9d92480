//! What the observability tests look at: every metric a `metrics`
//! debugging recorder saw and every span and event a `tracing` layer saw,
//! both installed for the current thread only, so tests running side by
//! side do not see each other's. Run the async work on a current-thread
//! runtime inside [`observe`]: spawned tasks (a coalescing worker) then run
//! on this thread too.

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

/// A field's recorded value: strings as they are, everything else `{:?}`.
pub(crate) type Fields = BTreeMap<String, String>;

/// A span as it was closed.
#[derive(Debug, Clone)]
pub(crate) struct SpanSeen {
    pub(crate) name: &'static str,
    pub(crate) fields: Fields,
}

/// An event, with the span it happened in.
#[derive(Debug, Clone)]
pub(crate) struct EventSeen {
    pub(crate) level: Level,
    pub(crate) message: String,
    pub(crate) fields: Fields,
    pub(crate) span: Option<&'static str>,
}

/// A metric's key (name and sorted labels) and value.
#[derive(Debug)]
pub(crate) struct MetricSeen {
    pub(crate) name: String,
    pub(crate) labels: Vec<(String, String)>,
    pub(crate) value: DebugValue,
}

/// Everything seen while the work ran.
#[derive(Debug, Default)]
pub(crate) struct Seen {
    pub(crate) spans: Vec<SpanSeen>,
    pub(crate) events: Vec<EventSeen>,
    pub(crate) metrics: Vec<MetricSeen>,
}

impl Seen {
    fn metric(&self, name: &str, labels: &[(&str, &str)]) -> Option<&DebugValue> {
        let mut wanted: Vec<(String, String)> =
            labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        wanted.sort();
        self.metrics.iter().find(|m| m.name == name && m.labels == wanted).map(|m| &m.value)
    }

    /// A counter's value (0 when never emitted with exactly these labels).
    pub(crate) fn counter(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        match self.metric(name, labels) {
            Some(DebugValue::Counter(n)) => *n,
            None => 0,
            Some(other) => panic!("{name} is not a counter: {other:?}"),
        }
    }

    /// A gauge's value (0 when never emitted).
    pub(crate) fn gauge(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        match self.metric(name, labels) {
            Some(DebugValue::Gauge(v)) => v.0,
            None => 0.0,
            Some(other) => panic!("{name} is not a gauge: {other:?}"),
        }
    }

    /// A histogram's samples (empty when never emitted).
    pub(crate) fn histogram(&self, name: &str, labels: &[(&str, &str)]) -> Vec<f64> {
        match self.metric(name, labels) {
            Some(DebugValue::Histogram(values)) => values.iter().map(|v| v.0).collect(),
            None => Vec::new(),
            Some(other) => panic!("{name} is not a histogram: {other:?}"),
        }
    }

    /// The closed spans called `name`.
    pub(crate) fn spans(&self, name: &str) -> Vec<&SpanSeen> {
        self.spans.iter().filter(|span| span.name == name).collect()
    }

    /// The events whose message is `message`.
    pub(crate) fn events(&self, message: &str) -> Vec<&EventSeen> {
        self.events.iter().filter(|event| event.message == message).collect()
    }

    /// Whether any span or event field holds `text` (to check that an id or
    /// an error never shows).
    pub(crate) fn mentions(&self, text: &str) -> bool {
        let fields = self.spans.iter().map(|s| &s.fields).chain(self.events.iter().map(|e| &e.fields));
        fields.flat_map(|f| f.values()).any(|value| value.contains(text))
    }
}

/// Runs `work` on a fresh current-thread runtime with a debugging recorder
/// and a capturing subscriber installed for this thread; returns its output
/// and what was seen.
pub(crate) fn observe<T>(work: impl Future<Output = T>) -> (T, Seen) {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let log = Arc::new(Mutex::new(Log::default()));
    let subscriber = tracing_subscriber::registry().with(Capture(Arc::clone(&log)));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let output = tracing::subscriber::with_default(subscriber, || {
        metrics::with_local_recorder(&recorder, || runtime.block_on(work))
    });
    drop(runtime);
    let log = std::mem::take(&mut *log.lock().unwrap_or_else(PoisonError::into_inner));
    let metrics = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let (_, key) = key.into_parts();
            let mut labels: Vec<(String, String)> =
                key.labels().map(|l| (l.key().to_owned(), l.value().to_owned())).collect();
            labels.sort();
            MetricSeen { name: key.name().to_owned(), labels, value }
        })
        .collect();
    (output, Seen { spans: log.closed, events: log.events, metrics })
}

#[derive(Default)]
struct Log {
    open: BTreeMap<u64, SpanSeen>,
    closed: Vec<SpanSeen>,
    events: Vec<EventSeen>,
}

struct Capture(Arc<Mutex<Log>>);

impl Capture {
    fn log(&self) -> std::sync::MutexGuard<'_, Log> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

struct Visitor<'f>(&'f mut Fields);

impl Visit for Visitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Capture {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, _: Context<'_, S>) {
        let mut fields = Fields::new();
        attrs.record(&mut Visitor(&mut fields));
        self.log().open.insert(id.into_u64(), SpanSeen { name: attrs.metadata().name(), fields });
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, _: Context<'_, S>) {
        if let Some(span) = self.log().open.get_mut(&id.into_u64()) {
            values.record(&mut Visitor(&mut span.fields));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut fields = Fields::new();
        event.record(&mut Visitor(&mut fields));
        let message = fields.remove("message").unwrap_or_default();
        let span = ctx.event_span(event).map(|span| span.name());
        self.log().events.push(EventSeen { level: *event.metadata().level(), message, fields, span });
    }

    fn on_close(&self, id: Id, _: Context<'_, S>) {
        let mut log = self.log();
        if let Some(span) = log.open.remove(&id.into_u64()) {
            log.closed.push(span);
        }
    }
}
