//! The simulated world one schedule runs in: D1 (a primary and a replica
//! that lags by a random number of writes), the provider (single-use
//! rotating refresh tokens, or non-rotating ones), and one request's handle
//! implementing the core's `Grants`, `Runtime` and `Detach` over them. Every
//! state change is also where its invariant is checked (see `main.rs`).

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::rc::Rc;

use oauth_broker::error::BrokerError;
use oauth_broker::grant::Grant;
use oauth_broker::ids::{KeyHash, LeaseId, ProviderId};
use oauth_broker::refresh::{
    Detach, Grants, Opened, ReadFrom, Runtime, Status, CLIENT_BUDGET_MS, LEASE_SECS,
    UPSTREAM_PATIENCE_MS,
};
use oauth_broker::secret::RefreshToken;
use oauth_broker::upstream::{Failure, TokenResponse, Upstream};

use crate::exec::{sleep, timeout, Collect, Exec, Handoff};

/// A deliberate bug the simulator must catch (test-only, in the simulated D1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mutation {
    None,
    /// The claim's `AND version = ?` is dropped: a stale read can win the lease.
    ClaimIgnoresVersion,
    /// The write's `WHERE version = ?` is dropped: a newer row can be overwritten.
    WriteIgnoresVersion,
    /// The lease is released (its own statement) before the grant is written.
    ReleaseBeforeWrite,
}

/// Everything a schedule draws from its seed before it starts.
#[derive(Clone, Debug)]
pub struct Plan {
    pub mutation: Mutation,
    pub clients: u32,
    pub requests_per_client: u32,
    pub window_ms: u64,
    pub rotating: bool,
    pub max_lag: u64,
    pub first_expires_in: i64,
    pub expires_in: (u64, u64),
    pub upstream_timeout_ms: u64,
    /// Per mille, drawn per event while faults are on.
    pub d1_fail: u64,
    pub d1_spike: u64,
    pub p5xx: u64,
    pub invalid_grant: u64,
    pub slow: u64,
    pub lost: u64,
    pub hang_up: u64,
    pub death: u64,
    /// Chance that a won claim is followed within 0.6 s by a revoke / a
    /// re-authorization into the same authid (the races that matter).
    pub revoke_on_claim: u64,
    pub reauth_on_claim: u64,
}

pub const START_MS: u64 = 1_700_000_000_000;

pub fn reauth() -> BrokerError {
    BrokerError::ReauthorizationRequired {
        broker_url: "https://broker.sim/".into(),
    }
}

#[derive(Clone)]
pub struct Row {
    pub grant: Rc<Grant>,
    /// The grant's refresh token (kept beside it: checked after every step).
    pub rt: Rc<str>,
    pub lineage: u32,
    pub version: i64,
    pub status: Status,
    pub lease_until: i64,
    pub lease: Option<String>,
}

/// Every state the primary has been in, oldest first: the replica serves one
/// a random number of writes back. `None` = no row (not yet, or deleted).
pub struct Db {
    pub history: Vec<Option<Row>>,
    lease_seq: u64,
}

impl Db {
    pub fn primary(&self) -> Option<&Row> {
        self.history.last().and_then(Option::as_ref)
    }

    fn commit(&mut self, row: Option<Row>) {
        self.history.push(row);
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Death {
    /// The provider answered `invalid_grant` on its own (injected: the user
    /// revoked the app at the provider).
    Injected,
    /// A spent refresh token was presented; the provider killed the lineage.
    Spent,
}

enum Rt {
    Live,
    Spent { successor: String },
}

pub struct Provider {
    rts: HashMap<String, Rt>,
    /// Access token -> (expiry in unix s, minted at in ms).
    pub ats: HashMap<String, (i64, u64)>,
    pub dead: HashMap<u32, Death>,
    minted: u64,
    pub lineages: u32,
}

/// What one request did, for the checks.
#[derive(Default, Clone)]
pub struct ReqInfo {
    pub start_ms: u64,
    pub claimed: bool,
    pub claim_version: i64,
    pub claim_at_ms: u64,
    pub lease_until: i64,
    pub upstream: Option<u32>, // lineage of the refresh in flight
    pub d1_fault: bool,
    pub got_5xx: bool,
    pub hung_up: bool,
    pub isolate_died: bool,
    /// Its `wait_until` work was still running 30 s after the response.
    pub cut_off: bool,
    pub write_gave_up: bool,
    pub answered: bool,
}

/// A presentation of a spent refresh token, classified at the end.
pub struct SpentUse {
    pub token: String,
    pub successor: String,
}

/// Counters: what happened and how often each invariant was checked/broken.
#[derive(Default, Clone, Debug)]
pub struct Tally {
    pub schedules: u64,
    pub steps: u64,
    pub requests: u64,
    pub upstream_calls: u64,
    pub refreshes: u64,
    pub answers: BTreeMap<&'static str, u64>,
    pub faults: BTreeMap<&'static str, u64>,
    pub checks: BTreeMap<&'static str, u64>,
    pub violations: BTreeMap<&'static str, u64>,
    /// Losses no broker can prevent, by kind (and revokes racing a claim).
    pub unpreventable: BTreeMap<&'static str, u64>,
    pub finals: BTreeMap<&'static str, u64>,
}

impl Tally {
    pub fn add(&mut self, o: &Tally) {
        self.schedules += o.schedules;
        self.steps += o.steps;
        self.requests += o.requests;
        self.upstream_calls += o.upstream_calls;
        self.refreshes += o.refreshes;
        for (a, b) in [
            (&mut self.answers, &o.answers),
            (&mut self.faults, &o.faults),
            (&mut self.checks, &o.checks),
            (&mut self.violations, &o.violations),
            (&mut self.unpreventable, &o.unpreventable),
            (&mut self.finals, &o.finals),
        ] {
            for (k, v) in b {
                *a.entry(k).or_default() += v;
            }
        }
    }
}

pub fn bump(m: &mut BTreeMap<&'static str, u64>, k: &'static str) {
    *m.entry(k).or_default() += 1;
}

pub struct World {
    pub exec: Rc<Exec>,
    pub plan: Plan,
    pub faults: Cell<bool>,
    pub db: RefCell<Db>,
    pub prov: RefCell<Provider>,
    pub reqs: RefCell<Vec<ReqInfo>>,
    pub revoked_at: Cell<Option<u64>>,
    pub persisted: RefCell<HashSet<String>>,
    /// Rotated refresh token -> the request whose runtime received it.
    pub delivered: RefCell<HashMap<String, u32>>,
    /// (lineage, version read) -> (request, lease_until) of a successful
    /// refresh whose answer reached the broker.
    pub refreshed: RefCell<HashMap<(u32, i64), (u32, i64)>>,
    pub spent: RefCell<Vec<SpentUse>>,
    pub tally: RefCell<Tally>,
    went_back: Cell<bool>,
    pub violations: RefCell<Vec<String>>,
    pub trace: bool,
}

fn lineage_of(token: &str) -> u32 {
    token
        .split('.')
        .nth(1)
        .and_then(|l| l.parse().ok())
        .unwrap_or(u32::MAX)
}

impl World {
    pub fn new(exec: Rc<Exec>, plan: Plan, trace: bool) -> Rc<World> {
        let w = Rc::new(World {
            exec,
            plan,
            faults: Cell::new(true),
            db: RefCell::new(Db {
                history: vec![None],
                lease_seq: 0,
            }),
            prov: RefCell::new(Provider {
                rts: HashMap::new(),
                ats: HashMap::new(),
                dead: HashMap::new(),
                minted: 0,
                lineages: 0,
            }),
            reqs: RefCell::new(vec![ReqInfo::default()]), // request 0: the world's own tasks
            revoked_at: Cell::new(None),
            persisted: RefCell::new(HashSet::new()),
            delivered: RefCell::new(HashMap::new()),
            refreshed: RefCell::new(HashMap::new()),
            spent: RefCell::new(Vec::new()),
            tally: RefCell::new(Tally::default()),
            went_back: Cell::new(false),
            violations: RefCell::new(Vec::new()),
            trace,
        });
        // The login that stored the grant: the replica may not have it yet.
        let row = w.login(w.plan.first_expires_in);
        w.db.borrow_mut().commit(Some(row));
        w
    }

    pub fn now_s(&self) -> i64 {
        (self.exec.now() / 1000) as i64
    }

    pub fn rng(&self, lo: u64, hi: u64) -> u64 {
        self.exec.rng.borrow_mut().range(lo, hi)
    }

    fn chance(&self, per_mille: u64) -> bool {
        self.faults.get() && self.exec.rng.borrow_mut().chance(per_mille)
    }

    pub fn note(&self, what: impl FnOnce() -> String) {
        if self.trace {
            eprintln!("  {:>9} ms  {}", self.exec.now() - START_MS, what());
        }
    }

    pub fn violate(&self, invariant: &'static str, detail: String) {
        bump(&mut self.tally.borrow_mut().violations, invariant);
        self.note(|| format!("VIOLATION {invariant}: {detail}"));
        self.violations
            .borrow_mut()
            .push(format!("{invariant}: {detail}"));
    }

    /// After every step: the primary never holds a refresh token whose
    /// successor the broker had already stored (a lost update, or a write of
    /// a stale read).
    pub fn after_step(&self) {
        let db = self.db.borrow();
        let Some(row) = db.primary() else { return };
        if let Some(Rt::Spent { successor }) = self.prov.borrow().rts.get(&*row.rt) {
            if self.persisted.borrow().contains(successor) && !self.went_back.get() {
                self.went_back.set(true);
                self.violate(
                    "stored refresh token never goes back",
                    format!("the row holds {} though {successor} was stored", row.rt),
                );
            }
        }
    }

    pub fn check(&self, invariant: &'static str) {
        bump(&mut self.tally.borrow_mut().checks, invariant);
    }

    fn fault(&self, kind: &'static str) {
        bump(&mut self.tally.borrow_mut().faults, kind);
    }

    pub fn new_request(&self) -> u32 {
        let mut reqs = self.reqs.borrow_mut();
        reqs.push(ReqInfo {
            start_ms: self.exec.now(),
            ..ReqInfo::default()
        });
        self.tally.borrow_mut().requests += 1;
        (reqs.len() - 1) as u32
    }

    fn info<T>(&self, id: u32, f: impl FnOnce(&mut ReqInfo) -> T) -> T {
        f(&mut self.reqs.borrow_mut()[id as usize])
    }

    fn token_json(&self, lineage: u32, rotate: Option<&str>) -> (String, Option<String>) {
        let mut p = self.prov.borrow_mut();
        p.minted += 1;
        let n = p.minted;
        let at = format!("at.{lineage}.{n}");
        let (lo, hi) = self.plan.expires_in;
        let expires_in = self.rng(lo, hi) as i64;
        p.ats
            .insert(at.clone(), (self.now_s() + expires_in, self.exec.now()));
        let rt = rotate.map(|_| format!("rt.{lineage}.{n}"));
        if let Some(rt) = &rt {
            p.rts.insert(rt.clone(), Rt::Live);
            if let Some(old) = rotate.filter(|o| !o.is_empty()) {
                p.rts.insert(
                    old.to_string(),
                    Rt::Spent {
                        successor: rt.clone(),
                    },
                );
            }
        }
        let json = match &rt {
            Some(rt) => {
                format!(
                    r#"{{"access_token":"{at}","refresh_token":"{rt}","expires_in":{expires_in}}}"#
                )
            }
            None => format!(r#"{{"access_token":"{at}","expires_in":{expires_in}}}"#),
        };
        (json, rt)
    }

    /// A login at the provider: a new lineage, its grant as a fresh row.
    pub fn login(&self, expires_in: i64) -> Row {
        let lineage = {
            let mut p = self.prov.borrow_mut();
            p.lineages += 1;
            p.lineages
        };
        let (json, _) = self.token_json(lineage, Some(""));
        let resp = TokenResponse::parse(json.as_bytes()).expect("sim json");
        let mut grant = Grant::from_code_exchange(resp, self.now_s()).expect("has rt");
        grant.expires_at = self.now_s() + expires_in;
        if let Some(at) = grant.access_token() {
            let mut p = self.prov.borrow_mut();
            if let Some(a) = p.ats.get_mut(at.secret()) {
                a.0 = grant.expires_at;
            }
        }
        let rt = grant.refresh_token().expect("rt").secret().to_string();
        self.persisted.borrow_mut().insert(rt);
        Row {
            rt: rt_of(&grant).into(),
            grant: Rc::new(grant),
            lineage,
            version: 1_000 * lineage as i64,
            status: Status::Active,
            lease_until: 0,
            lease: None,
        }
    }

    /// The user revokes the authid: the row is deleted on the primary.
    pub fn revoke(&self) {
        let mut db = self.db.borrow_mut();
        if db.primary().is_some() {
            db.commit(None);
            self.revoked_at.set(Some(self.exec.now()));
            self.fault("revoke");
            self.note(|| "revoke: row deleted on the primary".into());
        }
    }

    /// The user logs in again into the same authid (`replace`: a new grant,
    /// version bumped, lease and status afresh).
    pub fn reauthorize(&self) {
        if self.db.borrow().primary().is_none() {
            return;
        }
        let mut row = self.login(self.plan.first_expires_in);
        let mut db = self.db.borrow_mut();
        if let Some(old) = db.primary() {
            row.version = old.version + 1;
            db.commit(Some(row));
            self.fault("reauthorize");
            self.note(|| "re-authorization: a new grant replaced the row".into());
        }
    }

    /// Adversarial timing (FoundationDB's "buggify"): right after a claim
    /// wins, sometimes revoke or re-authorize while the refresh is in flight.
    fn after_claim(self: &Rc<World>) {
        for (pm, revoke) in [
            (self.plan.revoke_on_claim, true),
            (self.plan.reauth_on_claim, false),
        ] {
            if self.chance(pm) {
                let w = self.clone();
                let at = self.rng(0, 600);
                self.exec.spawn(0, false, async move {
                    sleep(&w.exec, at).await;
                    match revoke {
                        true => w.revoke(),
                        false => w.reauthorize(),
                    }
                });
            }
        }
    }

    /// The provider's token endpoint receiving `rt`: the answer, and the
    /// refresh token it rotated to, if it did.
    fn provider(&self, id: u32, rt: &str) -> (Result<Upstream, BrokerError>, Option<String>) {
        let lineage = lineage_of(rt);
        self.tally.borrow_mut().upstream_calls += 1;
        if self.prov.borrow().dead.contains_key(&lineage) {
            self.note(|| format!("provider: {rt} of a dead grant: invalid_grant"));
            return (Ok(Upstream::InvalidGrant), None);
        }
        let state = match self.prov.borrow().rts.get(rt) {
            None => None,
            Some(Rt::Live) => Some(None),
            Some(Rt::Spent { successor }) => Some(Some(successor.clone())),
        };
        self.check("spent refresh token never presented");
        match state {
            None => {
                self.violate(
                    "spent refresh token never presented",
                    format!("{rt} was never issued"),
                );
                return (Ok(Upstream::InvalidGrant), None);
            }
            Some(Some(successor)) => {
                // Box's rule: a spent refresh token kills the grant.
                self.prov.borrow_mut().dead.insert(lineage, Death::Spent);
                if self.persisted.borrow().contains(&successor) {
                    self.violate(
                        "spent refresh token never presented",
                        format!(
                            "request {id} presented {rt}; its successor {successor} was stored"
                        ),
                    );
                }
                self.note(|| {
                    format!("provider: SPENT {rt} presented by request {id}; grant killed")
                });
                self.spent.borrow_mut().push(SpentUse {
                    token: rt.to_string(),
                    successor,
                });
                return (Ok(Upstream::InvalidGrant), None);
            }
            Some(None) => {}
        }
        if self.chance(self.plan.p5xx) {
            self.fault("provider 5xx");
            self.info(id, |r| r.got_5xx = true);
            self.note(|| format!("provider: 503 for {rt}"));
            return (Ok(Upstream::Failed(Failure::Unavailable)), None);
        }
        if self.chance(self.plan.invalid_grant) {
            self.fault("provider invalid_grant");
            self.prov.borrow_mut().dead.insert(lineage, Death::Injected);
            self.note(|| format!("provider: invalid_grant for {rt} (revoked at the provider)"));
            return (Ok(Upstream::InvalidGrant), None);
        }
        // At most one refresh per grant per expiry: a second one for the same
        // version read is a bug if the broker had received the first one's
        // answer while that holder's lease still held.
        let (version, claim_at) = self.info(id, |r| (r.claim_version, r.claim_at_ms));
        self.check("one refresh per expiry");
        if let Some(&(other, other_lease)) = self.refreshed.borrow().get(&(lineage, version)) {
            if other != id && other_lease * 1000 > claim_at as i64 {
                self.violate(
                    "one refresh per expiry",
                    format!("requests {other} and {id} both refreshed version {version}; {other}'s answer had arrived and its lease had not expired"),
                );
            }
        }
        self.tally.borrow_mut().refreshes += 1;
        let (json, next) = self.token_json(lineage, self.plan.rotating.then_some(rt));
        self.note(|| {
            format!(
                "provider: {rt} refreshed -> {}",
                next.as_deref().unwrap_or("(kept)")
            )
        });
        let resp = TokenResponse::parse(json.as_bytes()).expect("sim json");
        (Ok(Upstream::Ok(resp)), next)
    }
}

/// One request as the core sees it: its row, its runtime, its `wait_until`.
#[derive(Clone)]
pub struct Req {
    pub w: Rc<World>,
    pub id: u32,
}

impl Req {
    /// One D1 statement: latency, then `apply` atomically on the database
    /// (or a failure before it ran), then latency back (or a failure after it
    /// ran: applied, answer lost).
    async fn stmt<T>(
        &self,
        what: &'static str,
        replica: bool,
        apply: impl FnOnce(&mut Db) -> T,
    ) -> Result<T, BrokerError> {
        let w = &self.w;
        let latency = || match w.chance(w.plan.d1_spike) {
            true => {
                w.fault("d1 slow statement");
                w.rng(200, 2_000)
            }
            false if replica => w.rng(0, 5),
            false => w.rng(1, 40),
        };
        let (there, back) = (latency(), latency());
        sleep(&w.exec, there).await;
        if w.chance(w.plan.d1_fail) {
            w.fault("d1 failure");
            w.info(self.id, |r| r.d1_fault = true);
            w.note(|| format!("request {}: d1 {what} failed", self.id));
            return Err(BrokerError::storage(format!("d1 {what}: injected")));
        }
        let v = apply(&mut w.db.borrow_mut());
        sleep(&w.exec, back).await;
        if w.chance(w.plan.d1_fail) {
            w.fault("d1 failure after commit");
            w.info(self.id, |r| r.d1_fault = true);
            w.note(|| format!("request {}: d1 {what} ran, answer lost", self.id));
            return Err(BrokerError::storage(format!("d1 {what}: injected")));
        }
        Ok(v)
    }
}

impl Grants for Req {
    async fn open(&self, from: ReadFrom) -> Result<Opened, BrokerError> {
        let w = self.w.clone();
        let replica = from == ReadFrom::Replica;
        let row = self
            .stmt("find_grant", replica, |db| {
                let newest = db.history.len() - 1;
                let lag = match replica {
                    true => w.rng(0, w.plan.max_lag.min(newest as u64)) as usize,
                    false => 0,
                };
                db.history[newest - lag].clone()
            })
            .await?;
        let row = row.ok_or(BrokerError::UnknownAuthId)?;
        Ok(Opened {
            provider: ProviderId::new("sim"),
            status: row.status,
            lease_until: row.lease_until,
            grant: (*row.grant).clone(),
            key_hash: KeyHash::new("kh"),
            version: row.version,
        })
    }

    async fn claim(&self, read: &Opened, now: i64) -> Result<Option<LeaseId>, BrokerError> {
        let w = self.w.clone();
        let (id, version) = (self.id, read.version);
        let lease = self
            .stmt("claim_lease", false, |db| {
                let row = db.primary()?.clone();
                let version_ok =
                    w.plan.mutation == Mutation::ClaimIgnoresVersion || row.version == version;
                if !(version_ok && row.lease_until <= now && row.status == Status::Active) {
                    return None;
                }
                if let Some(at) = w.revoked_at.get() {
                    w.violate(
                        "revoked grant never refreshed",
                        format!("claim at {at} after the revoke"),
                    );
                }
                db.lease_seq += 1;
                let lease = format!("L{}", db.lease_seq);
                let mut r = row.clone();
                r.lease_until = now + LEASE_SECS;
                r.lease = Some(lease.clone());
                db.commit(Some(r));
                w.info(id, |r| {
                    r.claimed = true;
                    r.claim_version = version;
                    r.claim_at_ms = w.exec.now();
                    r.lease_until = now + LEASE_SECS;
                });
                w.note(|| format!("request {id}: claimed version {version} ({lease})"));
                Some(LeaseId::new(lease))
            })
            .await?;
        if lease.is_some() {
            w.after_claim();
        }
        Ok(lease)
    }

    async fn write(
        &self,
        read: &Opened,
        lease: &LeaseId,
        grant: &Grant,
        _now: i64,
    ) -> Result<bool, BrokerError> {
        let w = self.w.clone();
        if w.plan.mutation == Mutation::ReleaseBeforeWrite {
            let lease = lease.as_str().to_string();
            self.stmt("release_lease", false, |db| {
                if let Some(row) = db.primary().filter(|r| r.lease.as_deref() == Some(&lease)) {
                    let mut r = row.clone();
                    (r.lease_until, r.lease) = (0, None);
                    db.commit(Some(r));
                }
            })
            .await?;
        }
        let id = self.id;
        self.stmt("write_refreshed", false, |db| {
            let Some(row) = db.primary() else {
                return false;
            };
            if !(w.plan.mutation == Mutation::WriteIgnoresVersion || row.version == read.version) {
                w.note(|| format!("request {id}: write lost its compare-and-swap"));
                return false;
            }
            w.check("newer grant never overwritten");
            // A retry rewriting its own earlier write (its answer was lost) is harmless.
            if *row.grant != read.grant && *row.grant != *grant {
                w.violate(
                    "newer grant never overwritten",
                    format!(
                        "request {id} wrote over a grant written after its read (lineage {} -> {})",
                        row.lineage,
                        lineage_of(&rt_of(grant))
                    ),
                );
            }
            let rt = rt_of(grant);
            w.persisted.borrow_mut().insert(rt.clone());
            let next = Row {
                rt: rt.as_str().into(),
                grant: Rc::new(grant.clone()),
                lineage: lineage_of(&rt),
                version: row.version + 1,
                status: Status::Active,
                lease_until: 0,
                lease: None,
            };
            db.commit(Some(next));
            w.note(|| format!("request {id}: wrote {rt}"));
            true
        })
        .await
    }

    async fn release(
        &self,
        _read: &Opened,
        lease: &LeaseId,
        status: Status,
        outcome: &'static str,
        _now: i64,
    ) -> Result<(), BrokerError> {
        let w = self.w.clone();
        let id = self.id;
        self.stmt("release_lease", false, |db| {
            if let Some(row) = db
                .primary()
                .filter(|r| r.lease.as_deref() == Some(lease.as_str()))
            {
                let mut r = row.clone();
                (r.lease_until, r.lease, r.status) = (0, None, status);
                db.commit(Some(r));
                w.note(|| format!("request {id}: released ({outcome})"));
            }
        })
        .await
    }
}

fn rt_of(grant: &Grant) -> String {
    grant
        .refresh_token()
        .map(|t| t.secret().to_string())
        .unwrap_or_default()
}

impl Runtime for Req {
    fn now_ms(&self) -> u64 {
        self.w.exec.now()
    }

    async fn sleep(&self, ms: u64) {
        sleep(&self.w.exec, ms).await
    }

    fn upstream_timeout_ms(&self) -> u64 {
        self.w.plan.upstream_timeout_ms
    }

    async fn refresh_upstream(
        &self,
        _provider: &ProviderId,
        refresh_token: &RefreshToken,
    ) -> Result<Upstream, BrokerError> {
        let w = self.w.clone();
        let (id, rt) = (self.id, refresh_token.secret().to_string());
        let lineage = lineage_of(&rt);
        let now = w.exec.now();
        // One refresh in flight per grant while its lease holds.
        w.check("one refresh in flight per lease");
        for (other, r) in w.reqs.borrow().iter().enumerate() {
            if other as u32 != id
                && r.upstream == Some(lineage)
                && !r.isolate_died
                && r.lease_until * 1000 > now as i64
            {
                w.violate(
                    "one refresh in flight per lease",
                    format!("requests {other} and {id} both refreshing lineage {lineage}"),
                );
            }
        }
        w.check("revoked grant never refreshed");
        if let Some(at) = w.revoked_at.get() {
            if w.info(id, |r| r.claim_at_ms) > at {
                w.violate(
                    "revoked grant never refreshed",
                    format!("request {id} claimed after the revoke"),
                );
            } else {
                // Claimed before the delete reached the primary, presented after it.
                bump(
                    &mut w.tally.borrow_mut().unpreventable,
                    "revoke raced an in-flight refresh",
                );
            }
        }
        w.info(id, |r| r.upstream = Some(lineage));
        w.note(|| format!("request {id}: presents {rt} upstream"));
        let (to_provider, from_provider) = if w.chance(w.plan.lost) {
            w.fault("provider answer lost");
            (w.rng(5, 400), UPSTREAM_PATIENCE_MS + 60_000)
        } else if w.chance(w.plan.slow) {
            w.fault("provider slow");
            (
                w.rng(5, 400),
                w.rng(w.plan.upstream_timeout_ms, UPSTREAM_PATIENCE_MS),
            )
        } else {
            (w.rng(5, 400), w.rng(5, 400))
        };
        let w2 = w.clone();
        let call = async move {
            sleep(&w2.exec, to_provider).await;
            let answer = w2.provider(id, &rt);
            sleep(&w2.exec, from_provider).await;
            answer
        };
        let answer = timeout(&w.exec, UPSTREAM_PATIENCE_MS, call).await;
        w.info(id, |r| r.upstream = None);
        match answer {
            Some((answer, next)) => {
                if let Some(next) = next {
                    w.delivered.borrow_mut().insert(next, id);
                }
                if let Ok(Upstream::Ok(_)) = &answer {
                    let (version, lease_until) = w.info(id, |r| (r.claim_version, r.lease_until));
                    w.refreshed
                        .borrow_mut()
                        .insert((lineage, version), (id, lease_until));
                }
                answer
            }
            None => {
                w.note(|| format!("request {id}: provider gave no answer within patience"));
                Err(BrokerError::ProviderTimeout)
            }
        }
    }

    fn warn(&self, message: &str) {
        if message.contains("not stored") {
            self.w.info(self.id, |r| r.write_gave_up = true);
        }
        self.w
            .note(|| format!("request {}: warn: {message}", self.id));
    }
}

impl Detach for Req {
    async fn finish<T: 'static>(
        &self,
        work: impl Future<Output = T> + 'static,
        wait_ms: u64,
    ) -> Option<T> {
        let exec = self.w.exec.clone();
        let handoff = Handoff::new(exec.current());
        let (h, e) = (handoff.clone(), exec.clone());
        exec.spawn(self.id, true, async move {
            let v = work.await;
            h.put(&e, v);
        });
        timeout(&exec, wait_ms, Collect(handoff)).await
    }
}

/// Whether an answer is one the docs promise for the request's situation.
pub fn answer_allowed(
    w: &World,
    id: u32,
    answer: &Result<oauth_broker::refresh::Served, BrokerError>,
) -> Result<&'static str, String> {
    let r = w.reqs.borrow()[id as usize].clone();
    let now = w.exec.now();
    if now > r.start_ms + CLIENT_BUDGET_MS {
        return Err(format!("answered after {} ms", now - r.start_ms));
    }
    let e = match answer {
        Ok(s) => {
            let at = s.token.secret();
            return match w.prov.borrow().ats.get(at) {
                Some(&(exp, _)) if exp * 1000 > now as i64 => Ok("200 served"),
                Some(_) => Err(format!("served expired {at}")),
                None => Err(format!("served {at}, which the provider never issued")),
            };
        }
        Err(e) => e,
    };
    let ok = match e {
        BrokerError::RefreshPending => return Ok("504 refresh_pending"),
        BrokerError::ProviderTimeout => r.claimed,
        BrokerError::ProviderFailed => r.got_5xx,
        BrokerError::StorageUnavailable { .. } => r.d1_fault,
        BrokerError::UnknownAuthId => w.revoked_at.get().is_some(),
        BrokerError::ReauthorizationRequired { .. } => {
            *e == reauth() && !w.prov.borrow().dead.is_empty()
        }
        _ => false,
    };
    match ok {
        true => Ok(match e {
            BrokerError::ProviderTimeout => "504 provider_timeout",
            BrokerError::ProviderFailed => "502 provider_failed",
            BrokerError::StorageUnavailable { .. } => "500 storage_unavailable",
            BrokerError::UnknownAuthId => "401 unknown_authid",
            _ => "503 reauthorization_required",
        }),
        false => Err(format!("{e:?} not documented for this situation")),
    }
}
