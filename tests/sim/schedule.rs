//! One schedule: a plan drawn from the seed, the clients, faults and
//! actions spawned on the scheduler, the run, then the end-of-schedule
//! checks with faults stopped.

use std::rc::Rc;

use oauth_broker::error::BrokerError;
use oauth_broker::refresh::{single_flight, CLIENT_BUDGET_MS, UPSTREAM_TIMEOUT_MS};

use crate::exec::{sleep, Exec, Rng};
use crate::world::{
    answer_allowed, bump, reauth, Death, Mutation, Plan, Req, Tally, World, START_MS,
};

fn stress_slow_d1() -> bool {
    static SLOW: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *SLOW.get_or_init(|| std::env::var("SIM_STRESS").is_ok_and(|v| v == "slow-d1"))
}

/// Draws a plan: about a fifth of schedules run without faults, the rest
/// with rates that differ per schedule (so rare combinations come up).
pub fn plan(seed: u64, mutation: Mutation) -> Plan {
    let mut r = Rng::new(seed.wrapping_mul(0x2545_F491_4F6C_DD1D));
    let faulty = r.chance(800);
    let mut rate = |max: u64| match faulty && r.chance(600) {
        true => r.range(1, max),
        false => 0,
    };
    // `SIM_STRESS=slow-d1`: up to half of the D1 statements 0.2–2 s each way
    // and most provider answers slower than the client's timeout (beyond the
    // lease's timing assumptions; a bench, not the suite).
    let (spike, slowness) = match stress_slow_d1() {
        true => (500, 900),
        false => (40, 150),
    };
    let (d1_fail, d1_spike, p5xx, invalid_grant, slow, lost) = (
        rate(60),
        rate(spike),
        rate(200),
        rate(40),
        rate(slowness),
        rate(80),
    );
    let (hang_up, death, revoke_on_claim, reauth_on_claim) =
        (rate(300), rate(150), rate(60), rate(60));
    let lo = r.range(30, 120);
    Plan {
        mutation,
        clients: r.range(2, 8) as u32,
        requests_per_client: r.range(1, 3) as u32,
        window_ms: r.range(200, 60_000),
        rotating: r.chance(750),
        max_lag: r.range(0, 3),
        first_expires_in: r.range(0, 100) as i64,
        expires_in: (lo, r.range(lo, 400)),
        upstream_timeout_ms: match r.chance(800) {
            true => UPSTREAM_TIMEOUT_MS,
            false => r.range(1_000, UPSTREAM_TIMEOUT_MS),
        },
        d1_fail,
        d1_spike,
        p5xx,
        invalid_grant,
        slow,
        lost,
        hang_up,
        death,
        revoke_on_claim,
        reauth_on_claim,
    }
}

/// What one schedule found: its counters and the first violations.
pub struct Outcome {
    pub tally: Tally,
    pub violations: Vec<String>,
}

/// Cloudflare runs `wait_until` work up to 30 s past the response (or the
/// client's hang-up), then cancels it.
fn cut_off_detached_work(w: &Rc<World>, id: u32) {
    let w = w.clone();
    w.exec.clone().spawn(0, false, async move {
        sleep(&w.exec, WAIT_UNTIL_MS).await;
        if w.exec.kill(id, true) {
            w.reqs.borrow_mut()[id as usize].cut_off = true;
            bump(
                &mut w.tally.borrow_mut().faults,
                "wait_until cut off at 30 s",
            );
            w.note(|| format!("request {id}: wait_until work cut off"));
        }
    });
}

const WAIT_UNTIL_MS: u64 = 30_000;

fn request(w: &Rc<World>, id: u32) -> impl std::future::Future<Output = ()> + 'static {
    let w = w.clone();
    async move {
        let req = Req { w: w.clone(), id };
        let answer = single_flight(&req, &req, &req, &reauth()).await;
        w.reqs.borrow_mut()[id as usize].answered = true;
        cut_off_detached_work(&w, id);
        w.check("every answer documented");
        match answer_allowed(&w, id, &answer) {
            Ok(kind) => {
                bump(&mut w.tally.borrow_mut().answers, kind);
                w.note(|| format!("request {id}: answered {kind}"));
            }
            Err(why) => w.violate("every answer documented", format!("request {id}: {why}")),
        }
    }
}

pub fn run(seed: u64, mutation: Mutation, trace: bool) -> Outcome {
    let plan = plan(seed, mutation);
    if trace {
        eprintln!("plan: {plan:?}");
    }
    let exec = Exec::new(seed, START_MS);
    let w = World::new(exec.clone(), plan.clone(), trace);

    // Clients: each makes a few requests at random times in the window.
    for _ in 0..plan.clients * plan.requests_per_client {
        let start = w.rng(0, plan.window_ms);
        let hang_up = w.exec.rng.borrow_mut().chance(plan.hang_up);
        let hang_at = w.rng(0, CLIENT_BUDGET_MS);
        let dies = w.exec.rng.borrow_mut().chance(plan.death);
        let die_at = w.rng(0, 30_000);
        let w = w.clone();
        exec.spawn(0, false, async move {
            sleep(&w.exec, start).await;
            let id = w.new_request();
            w.note(|| format!("request {id}: starts"));
            w.exec.spawn(id, false, request(&w, id));
            if dies {
                let w = w.clone();
                w.exec.clone().spawn(0, false, async move {
                    sleep(&w.exec, die_at).await;
                    if w.exec.kill(id, true) {
                        w.reqs.borrow_mut()[id as usize].isolate_died = true;
                        bump(&mut w.tally.borrow_mut().faults, "isolate death");
                        w.note(|| format!("request {id}: ISOLATE DIED"));
                    }
                });
            }
            // The client hangs up, or its own 25 s budget runs out.
            let until = if hang_up {
                hang_at
            } else {
                CLIENT_BUDGET_MS + 1
            };
            sleep(&w.exec, until).await;
            if w.exec.running(id) {
                w.exec.kill(id, false);
                w.reqs.borrow_mut()[id as usize].hung_up = true;
                cut_off_detached_work(&w, id);
                match hang_up {
                    true => {
                        bump(&mut w.tally.borrow_mut().faults, "client hang-up");
                        w.note(|| format!("request {id}: client hung up"));
                    }
                    false => w.violate(
                        "every answer documented",
                        format!("request {id}: no answer within the client's budget"),
                    ),
                }
            }
        });
    }
    exec.run(|| w.after_step());

    // Faults stop. Once every lease is free and the cached token is under the
    // floor, one more request must refresh the grant (or say why it cannot).
    w.faults.set(false);
    // Past every cached token a lagging replica could still serve, too.
    let (lease_until, expires_at) =
        w.db.borrow()
            .history
            .iter()
            .flatten()
            .fold((0, 0), |(l, e), row| {
                (l.max(row.lease_until), e.max(row.grant.expires_at))
            });
    exec.advance_to(
        (lease_until * 1000)
            .max((expires_at - 60) * 1000)
            .max(exec.now() as i64) as u64
            + 1_000,
    );
    let id = w.new_request();
    let final_start = exec.now();
    let slot: Rc<std::cell::RefCell<Option<Result<_, BrokerError>>>> = Rc::default();
    {
        let (w, slot) = (w.clone(), slot.clone());
        exec.spawn(id, false, async move {
            let req = Req { w: w.clone(), id };
            let answer = single_flight(&req, &req, &req, &reauth()).await;
            *slot.borrow_mut() = Some(answer);
        });
    }
    exec.run(|| w.after_step());
    finish(&w, slot.borrow_mut().take(), final_start);

    let mut tally = w.tally.borrow().clone();
    tally.schedules = 1;
    tally.steps = exec.steps.get();
    *tally
        .checks
        .entry("stored refresh token never goes back")
        .or_default() += tally.steps;
    let violations = w.violations.borrow().clone();
    Outcome { tally, violations }
}

/// End of schedule: the final refresh and every spent-token presentation,
/// classified.
fn finish(
    w: &Rc<World>,
    answer: Option<Result<oauth_broker::refresh::Served, BrokerError>>,
    final_start: u64,
) {
    // Each spent refresh token presented: a bug if the broker ever stored its
    // successor; otherwise the rotation was lost where no broker can keep it.
    for s in w.spent.borrow().iter() {
        let holder = w.delivered.borrow().get(&s.successor).copied();
        let kind = if w.persisted.borrow().contains(&s.successor) {
            None // counted when presented (or below if stored later)
        } else {
            match holder.map(|h| w.reqs.borrow()[h as usize].clone()) {
                None => Some("answer never arrived (patience ran out)"),
                Some(r) if r.isolate_died => Some("isolate died holding the only copy"),
                Some(r) if r.cut_off => Some("wait_until's 30 s ran out holding the only copy"),
                Some(r) if r.write_gave_up => Some("D1 refused every write of it"),
                Some(_) => None,
            }
        };
        match kind {
            Some(k) => bump(&mut w.tally.borrow_mut().unpreventable, k),
            None if w.persisted.borrow().contains(&s.successor) => {
                // Presented before its successor was stored, stored afterwards.
                if !w.violations.borrow().iter().any(|v| v.contains(&s.token)) {
                    w.violate(
                        "spent refresh token never presented",
                        format!(
                            "{} presented; its successor {} was stored later",
                            s.token, s.successor
                        ),
                    );
                }
            }
            None => w.violate(
                "spent refresh token never presented",
                format!(
                    "{} presented; the broker had received {} and dropped it",
                    s.token, s.successor
                ),
            ),
        }
    }

    w.check("no grant lost");
    let Some(answer) = answer else {
        w.violate("no grant lost", "the final request never answered".into());
        return;
    };
    let dead =
        w.db.borrow()
            .primary()
            .and_then(|row| w.prov.borrow().dead.get(&row.lineage).copied());
    let finals = |k| bump(&mut w.tally.borrow_mut().finals, k);
    match (&answer, w.revoked_at.get(), dead) {
        (Err(BrokerError::UnknownAuthId), Some(_), _) => finals("revoked: unknown authid"),
        (Err(e), None, Some(Death::Injected)) if *e == reauth() => {
            finals("revoked at the provider: reauthorization_required")
        }
        (Err(e), None, Some(Death::Spent)) if *e == reauth() => {
            if w.violations.borrow().is_empty() {
                finals("unpreventable loss: reauthorization_required");
            }
        }
        (Ok(s), None, None) => {
            let minted = w.prov.borrow().ats.get(s.token.secret()).map(|a| a.1);
            match minted.is_some_and(|at| at >= final_start) && s.remaining > 0 {
                true => finals("refreshed"),
                false => w.violate(
                    "no grant lost",
                    format!("final answer {:?}", s.token.secret()),
                ),
            }
        }
        (a, revoked, dead) => w.violate(
            "no grant lost",
            format!(
                "final answer {a:?} (revoked {}, provider {:?})",
                revoked.is_some(),
                dead
            ),
        ),
    }
}
