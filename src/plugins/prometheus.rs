//! prometheus: records Kong's metrics for the requests it applies to, in
//! the log phase. Kong 3's flags decide what is recorded:
//! `status_code_metrics` → `kong_http_requests_total`, `latency_metrics` →
//! the three latency histograms, `bandwidth_metrics` →
//! `kong_bandwidth_bytes`; `per_consumer` adds the consumer's username (or
//! id) to the labels that have one, else that label is empty. Labels are
//! the route's and service's names (their ids when unnamed), never paths.
//! The metrics are served by the status listener's `/metrics`.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::{Done, Plugin, RequestCtx};
use crate::model::State;
use crate::observe::metrics::{self, WORKSPACE};
use crate::observe::RequestFacts;

struct Prometheus {
    per_consumer: bool,
    status_codes: bool,
    latency: bool,
    bandwidth: bool,
}

impl Plugin for Prometheus {
    fn log(&self, ctx: &RequestCtx, done: &Done) {
        let Some(facts) = ctx.extensions.get::<RequestFacts>() else {
            return;
        };
        let m = metrics::global();
        let service = facts.service.as_deref().unwrap_or("");
        let route = facts.route.as_deref().unwrap_or("");
        let consumer = match (&ctx.consumer, self.per_consumer) {
            (Some(c), true) => c.username.clone().unwrap_or_else(|| c.id.to_string()),
            _ => String::new(),
        };
        if self.status_codes {
            let code = done.status.as_u16().to_string();
            m.http_requests
                .with_label_values(&[
                    service,
                    route,
                    code.as_str(),
                    facts.source,
                    WORKSPACE,
                    consumer.as_str(),
                ])
                .inc();
        }
        if self.latency {
            let labels = [service, route, WORKSPACE];
            m.request_latency
                .with_label_values(&labels)
                .observe(m.latency_value(facts.start.elapsed()));
            m.kong_latency
                .with_label_values(&labels)
                .observe(m.latency_value(facts.kong_latency));
            if let Some(up) = facts.upstream_latency {
                m.upstream_latency
                    .with_label_values(&labels)
                    .observe(m.latency_value(up));
            }
        }
        if self.bandwidth {
            let bytes_in = facts.bytes_in.load(Ordering::Relaxed);
            for (direction, n) in [("ingress", bytes_in), ("egress", done.bytes_sent)] {
                m.bandwidth
                    .with_label_values(&[service, route, direction, WORKSPACE, consumer.as_str()])
                    .inc_by(n);
            }
        }
    }
}

pub fn build(config: &serde_json::Value, _state: &State) -> Result<Arc<dyn Plugin>, String> {
    let flag = |k: &str| config[k].as_bool().unwrap_or(false);
    Ok(Arc::new(Prometheus {
        per_consumer: flag("per_consumer"),
        status_codes: flag("status_code_metrics"),
        latency: flag("latency_metrics"),
        bandwidth: flag("bandwidth_metrics"),
    }))
}
