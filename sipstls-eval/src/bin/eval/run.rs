//! Runs the scenarios on the backends, repetitions alternating between backends.

use std::sync::Arc;
use std::time::Instant;

use sipstls::Backend;

use super::bench::{Fixture, Plan, Rep, Scenario};
use super::markdown::num;
use super::model::{BackendEntry, BackendFacts, Measured, ScenarioResult};
use super::stats::Sample;

/// A built backend to measure.
pub struct Target {
    /// Its name.
    pub name: String,
    /// The backend.
    pub backend: Arc<dyn Backend>,
}

/// Resolves the names asked for (all compiled-in backends when `None`): built ones become
/// targets, the others entries that say why they are missing.
pub fn resolve(names: Option<&[String]>) -> (Vec<BackendEntry>, Vec<Target>) {
    let compiled = sipstls::backend_names();
    let names: Vec<String> = match names {
        Some(n) => n.to_vec(),
        None => compiled.iter().map(|s| (*s).to_owned()).collect(),
    };
    let mut entries = Vec::new();
    let mut targets = Vec::new();
    for name in names {
        match sipstls::backend(&name) {
            Some(backend) => {
                let info = backend.info();
                let facts = BackendFacts { caps: backend.capabilities(), info };
                targets.push(Target { name: facts.info.name.to_owned(), backend });
                entries.push(BackendEntry { name: facts.info.name.to_owned(), status: Ok(facts) });
            }
            None => {
                let why = format!(
                    "not built: this binary has no backend named `{name}` (compiled in: {}; \
                     backends are selected by cargo features of sipstls)",
                    compiled.join(", ")
                );
                entries.push(BackendEntry { name, status: Err(why) });
            }
        }
    }
    (entries, targets)
}

/// Runs `scenario` on every target: fixtures (domains, warm-up) first, then
/// `plan.reps` rounds in which every target runs one repetition. A failing repetition
/// drops that backend's figure with the error.
pub fn scenario(scenario: &Scenario, targets: &[Target], plan: &Plan) -> ScenarioResult {
    let mut fixtures: Vec<Result<Fixture, String>> =
        targets.iter().map(|t| Fixture::new(&*t.backend, scenario, plan)).collect();
    let mut reps: Vec<Vec<Rep>> = vec![Vec::with_capacity(plan.reps); targets.len()];
    for round in 0..plan.reps {
        for (fixture, done) in fixtures.iter_mut().zip(&mut reps) {
            let Ok(fx) = fixture else { continue };
            match fx.run_rep() {
                Ok(rep) => done.push(rep),
                Err(e) => *fixture = Err(format!("repetition {} of {}: {e}", round + 1, plan.reps)),
            }
        }
    }
    let outcomes = targets
        .iter()
        .zip(fixtures)
        .zip(reps)
        .map(|((t, fixture), done)| (t.name.clone(), fixture.and_then(|fx| measured(&fx, &done))))
        .collect();
    ScenarioResult { scenario: scenario.clone(), outcomes }
}

/// The figure of one backend from its repetitions.
fn measured(fx: &Fixture, reps: &[Rep]) -> Result<Measured, String> {
    let server = Sample::new(reps.iter().map(|r| r.server).collect())
        .ok_or("no usable measurement (a repetition took no measurable time)")?;
    let client_values: Option<Vec<f64>> = reps.iter().map(|r| r.client).collect();
    let client = client_values.and_then(Sample::new);
    let mut negotiated = fx.negotiated.clone();
    if let Some((full, n)) = fx.full_instead {
        // Said beside the figure, which counts only the resumed connections.
        negotiated.push_str(&format!(
            "; up to {full} of {n} connections per repetition were full handshakes (ticket declined), left out"
        ));
    }
    Ok(Measured { server, client, negotiated })
}

/// Runs every scenario, printing one progress line per scenario to stderr.
pub fn all(scenarios: &[Scenario], targets: &[Target], plan: &Plan) -> Vec<ScenarioResult> {
    let mut results = Vec::with_capacity(scenarios.len());
    for (i, sc) in scenarios.iter().enumerate() {
        let start = Instant::now();
        eprint!("[{}/{}] {} ... ", i + 1, scenarios.len(), sc.label);
        let res = scenario(sc, targets, plan);
        eprintln!("{} ({:.1} s)", summary(&res), start.elapsed().as_secs_f64());
        results.push(res);
    }
    results
}

/// `rustls 14,210 handshakes/s, openssl error` for a progress line.
fn summary(res: &ScenarioResult) -> String {
    let unit = res.scenario.units().0;
    res.outcomes
        .iter()
        .map(|(name, o)| match o {
            Ok(m) => format!("{name} {} {unit}", num(m.server.median())),
            Err(_) => format!("{name} error"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}
