//! Log output: one JSON object per line (default) or human-readable text, for our own
//! events and for pingora's `log` records alike.

use std::fmt;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Json,
    Text,
}

/// JSON lines with `time`, `level`, `target`, `msg` and the event's fields at top level.
struct JsonLines;

struct Fields(serde_json::Map<String, serde_json::Value>);

impl Visit for Fields {
    fn record_debug(&mut self, f: &Field, v: &dyn fmt::Debug) {
        self.0.insert(f.name().into(), format!("{v:?}").into());
    }
    fn record_str(&mut self, f: &Field, v: &str) {
        self.0.insert(f.name().into(), v.into());
    }
    fn record_u64(&mut self, f: &Field, v: u64) {
        self.0.insert(f.name().into(), v.into());
    }
    fn record_i64(&mut self, f: &Field, v: i64) {
        self.0.insert(f.name().into(), v.into());
    }
    fn record_f64(&mut self, f: &Field, v: f64) {
        let rounded = (v * 1000.0).round() / 1000.0;
        self.0.insert(
            f.name().into(),
            serde_json::Number::from_f64(rounded).map_or(serde_json::Value::Null, Into::into),
        );
    }
    fn record_bool(&mut self, f: &Field, v: bool) {
        self.0.insert(f.name().into(), v.into());
    }
}

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut fields = Fields(serde_json::Map::new());
        fields.0.insert(
            "time".into(),
            humantime::format_rfc3339_millis(std::time::SystemTime::now())
                .to_string()
                .into(),
        );
        fields.0.insert(
            "level".into(),
            meta.level().as_str().to_ascii_lowercase().into(),
        );
        fields.0.insert("target".into(), meta.target().into());
        event.record(&mut fields);
        // tracing-log puts the original module in `log.target`; keep the line short.
        if let Some(t) = fields.0.remove("log.target") {
            fields.0.insert("target".into(), t);
        }
        for k in ["log.module_path", "log.file", "log.line"] {
            fields.0.remove(k);
        }
        if let Some(m) = fields.0.remove("message") {
            fields.0.insert("msg".into(), m);
        }
        writeln!(w, "{}", serde_json::Value::Object(fields.0))
    }
}

/// Install the global subscriber and the `log` bridge. `RUST_LOG` overrides the level.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Cap the `log` crate at the most verbose level the filter can let through: otherwise
    // every `debug!`/`trace!` in pingora's hot path builds a record only to be dropped.
    let max = match filter.max_level_hint() {
        Some(l) if l == tracing_subscriber::filter::LevelFilter::OFF => log::LevelFilter::Off,
        Some(l) if l == tracing_subscriber::filter::LevelFilter::ERROR => log::LevelFilter::Error,
        Some(l) if l == tracing_subscriber::filter::LevelFilter::WARN => log::LevelFilter::Warn,
        Some(l) if l == tracing_subscriber::filter::LevelFilter::INFO => log::LevelFilter::Info,
        Some(l) if l == tracing_subscriber::filter::LevelFilter::DEBUG => log::LevelFilter::Debug,
        _ => log::LevelFilter::Trace,
    };
    let _ = tracing_log::LogTracer::builder().with_max_level(max).init();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // `finish` + `set_global_default` rather than `try_init`, which would try to install a
    // second, uncapped `log` bridge.
    let _ = match format {
        LogFormat::Json => {
            tracing::subscriber::set_global_default(builder.event_format(JsonLines).finish())
        }
        LogFormat::Text => {
            tracing::subscriber::set_global_default(builder.with_target(true).finish())
        }
    };
}
