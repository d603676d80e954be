//! librdkafka's log lines from the compiled clients, kept for Python's logging.
//!
//! The reference route's clients log through Python (confluent-kafka's `logger`), so a
//! refused certificate, a failed login or a broker that is away shows in the log. The
//! compiled clients' lines come here instead: the rdkafka crate hands them over where a
//! client is polled, mostly with the GIL released, so they are queued rather than logged
//! there, and the Python side takes them where it polls anyway (`collectors/_kafka.py`,
//! `forward_native_log`).
//!
//! One queue for the process, bounded: a broker away for hours makes librdkafka repeat its
//! complaint, and nobody taking the lines must not grow memory. Past the bound the oldest
//! lines go and are counted.
#![forbid(unsafe_code)]

use std::collections::VecDeque;
use std::sync::Mutex;

use rdkafka::config::{ClientConfig, RDKafkaLogLevel};

/// Lines kept at most until Python takes them.
const KEPT: usize = 1_000;

#[derive(Default)]
struct Lines {
    lines: VecDeque<(u8, String)>,
    dropped: u64,
}

static LINES: Mutex<Lines> = Mutex::new(Lines {
    lines: VecDeque::new(),
    dropped: 0,
});

/// `config` logging what librdkafka logs by default: up to `Info`, or `Debug` where the
/// settings ask for debug contexts (`debug`). The rdkafka crate would log errors only, as no
/// Rust logger is set, and would hold a `debug` setting's lines back.
pub fn leveled(mut config: ClientConfig) -> ClientConfig {
    let level = match config.get("debug") {
        Some(_) => RDKafkaLogLevel::Debug,
        None => RDKafkaLogLevel::Info,
    };
    config.set_log_level(level);
    config
}

/// Python's logging level for a librdkafka (syslog) level.
fn python_level(level: RDKafkaLogLevel) -> u8 {
    match level {
        RDKafkaLogLevel::Emerg
        | RDKafkaLogLevel::Alert
        | RDKafkaLogLevel::Critical
        | RDKafkaLogLevel::Error => 40,
        RDKafkaLogLevel::Warning => 30,
        RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => 20,
        RDKafkaLogLevel::Debug => 10,
    }
}

/// Keep one line: what every compiled client's `ClientContext::log` does. `client` says
/// which of them (the reference's lines name librdkafka's handle instead).
pub fn keep(client: &str, level: RDKafkaLogLevel, facility: &str, message: &str) {
    let mut kept = LINES.lock().unwrap_or_else(|e| e.into_inner());
    if kept.lines.len() >= KEPT {
        kept.lines.pop_front();
        kept.dropped += 1;
    }
    kept.lines.push_back((
        python_level(level),
        format!("{facility} [{client}] {message}"),
    ));
}

/// Every line kept since the last call, oldest first, as (Python level, text), and how many
/// were dropped meanwhile for want of room.
pub fn take() -> (Vec<(u8, String)>, u64) {
    let mut kept = LINES.lock().unwrap_or_else(|e| e.into_inner());
    let dropped = std::mem::take(&mut kept.dropped);
    (kept.lines.drain(..).collect(), dropped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_logs_what_librdkafka_logs_by_default_and_debug_lines_when_asked() {
        assert_eq!(
            leveled(ClientConfig::new()).log_level as i32,
            RDKafkaLogLevel::Info as i32
        );
        let mut config = ClientConfig::new();
        config.set("debug", "broker,protocol");
        assert_eq!(
            leveled(config).log_level as i32,
            RDKafkaLogLevel::Debug as i32
        );
    }

    // One test: the queue is the process's, and tests run in parallel threads.
    #[test]
    fn lines_are_kept_in_order_up_to_the_bound_and_the_rest_counted() {
        take();
        keep("gate producer", RDKafkaLogLevel::Error, "FAIL", "refused");
        keep("gate source", RDKafkaLogLevel::Debug, "BROKER", "up");
        let (lines, dropped) = take();
        assert_eq!(
            lines,
            vec![
                (40, "FAIL [gate producer] refused".to_owned()),
                (10, "BROKER [gate source] up".to_owned())
            ]
        );
        assert_eq!(dropped, 0);
        assert_eq!(take(), (vec![], 0));
        for i in 0..KEPT + 5 {
            keep("tap", RDKafkaLogLevel::Warning, "X", &i.to_string());
        }
        let (lines, dropped) = take();
        assert_eq!(lines.len(), KEPT);
        assert_eq!(dropped, 5);
        assert_eq!(lines[0], (30, "X [tap] 5".to_owned()));
    }
}
