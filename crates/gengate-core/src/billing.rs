//! Credits: what a model costs ([`Price`]), what a task holds of its
//! owner's balance from its creation ([`Billing`], fixed on the task then,
//! so a later price change never changes what it is charged), and how the
//! hold ends when the task does ([`Billing::close`]): settled on success,
//! refunded or settled on failure and cancellation as the model's
//! [`RefundOn`] says. Also the per-user creation [`Limits`].

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What one task of a model costs, in credits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged, deny_unknown_fields)]
pub enum Price {
    /// The same for every task.
    Flat(i64),
    /// Per output file. The task holds `per_output` times the count asked
    /// for in the input field `input` (1 without one) and is charged for
    /// the outputs it made, never more than it held.
    PerOutput {
        per_output: i64,
        input: Option<String>,
    },
    /// Per second of the input field `input` (a video's duration).
    PerSecond { per_second: i64, input: String },
}

/// Which endings give a task's credits back (the others settle them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundOn {
    /// A failure the provider or gengate caused, after every attempt.
    pub failure: bool,
    /// A cancel by the owner or an admin.
    pub cancel: bool,
    /// The deadline passed first (`deadline_exceeded`).
    pub expiry: bool,
}

impl Default for RefundOn {
    /// Every failure and every cancel.
    fn default() -> Self {
        Self {
            failure: true,
            cancel: true,
            expiry: true,
        }
    }
}

impl RefundOn {
    /// Reads the config form: a list of `failure`, `cancel`, `expiry`.
    pub fn from_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<Self, String> {
        let mut r = Self {
            failure: false,
            cancel: false,
            expiry: false,
        };
        for n in names {
            match n {
                "failure" => r.failure = true,
                "cancel" => r.cancel = true,
                "expiry" => r.expiry = true,
                other => {
                    return Err(format!(
                        "unknown refund_on {other:?}: use failure, cancel or expiry"
                    ));
                }
            }
        }
        Ok(r)
    }
}

/// What a task holds of its owner's credits, fixed when it is created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Billing {
    /// Credits taken from the balance at creation.
    pub held: i64,
    /// With a per-output price: the price of one output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_output: Option<i64>,
    pub refund_on: RefundOn,
}

/// How a hold ends, as its ledger entry records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LedgerKind {
    /// The price taken from the balance when the task was created.
    Hold,
    /// The task was charged: its unused part (if any) goes back.
    Settle,
    /// The task was not charged: all it held goes back.
    Refund,
    /// Credits an admin added or took away.
    Grant,
}

impl LedgerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LedgerKind::Hold => "hold",
            LedgerKind::Settle => "settle",
            LedgerKind::Refund => "refund",
            LedgerKind::Grant => "grant",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Hold, Self::Settle, Self::Refund, Self::Grant]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

/// How a task ended, as far as its credits care ([`crate::Task::ending`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    Succeeded {
        outputs: usize,
    },
    Failed,
    /// Failed with `deadline_exceeded`.
    Expired,
    Canceled,
}

impl Billing {
    /// How the hold ends when its task ends as `ending`: the ledger entry's
    /// kind and the credits that go back to the balance (the rest is
    /// charged).
    pub fn close(&self, ending: Ending) -> (LedgerKind, i64) {
        let refund = match ending {
            Ending::Succeeded { outputs } => {
                let charged = self.per_output.map_or(self.held, |unit| {
                    unit.saturating_mul(outputs as i64).min(self.held)
                });
                return (LedgerKind::Settle, self.held - charged);
            }
            Ending::Canceled => self.refund_on.cancel,
            Ending::Expired => self.refund_on.expiry,
            Ending::Failed => self.refund_on.failure,
        };
        if refund {
            (LedgerKind::Refund, self.held)
        } else {
            (LedgerKind::Settle, 0)
        }
    }
}

impl Price {
    /// The credits a task with this (validated) `input` holds, or why the
    /// input does not say how much.
    pub fn hold(&self, input: &Value) -> Result<i64, String> {
        let count = |field: &str| -> Result<i64, String> {
            let v = input
                .get(field)
                .ok_or_else(|| format!("the price needs input.{field}"))?;
            let n = match v {
                Value::Number(n) => n.as_f64(),
                Value::String(s) => s.trim().parse::<f64>().ok(),
                _ => None,
            }
            .filter(|n| n.is_finite() && *n >= 0.0)
            .ok_or_else(|| format!("input.{field} must be a number to price the task"))?;
            Ok(n.ceil() as i64)
        };
        Ok(match self {
            Price::Flat(n) => *n,
            Price::PerOutput {
                per_output,
                input: field,
            } => {
                let n = match field {
                    Some(f) if input.get(f.as_str()).is_some() => count(f)?,
                    _ => 1,
                };
                per_output.saturating_mul(n.max(1))
            }
            Price::PerSecond {
                per_second,
                input: field,
            } => per_second.saturating_mul(count(field)?),
        })
    }
}

/// How many tasks one user may have and make (0: no limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Limits {
    /// Tasks queued or running at once.
    pub max_active: u32,
    /// Creates per minute (a token bucket: a full minute's worth at once,
    /// then one every `60 / creates_per_minute` seconds).
    pub creates_per_minute: u32,
    /// Creates per UTC day.
    pub tasks_per_day: u32,
}

/// Why the store refused a create before storing anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The user was disabled by an admin.
    Disabled,
    /// The balance does not cover the price.
    InsufficientCredits { balance: i64, price: i64 },
    /// As many tasks queued or running as the limit allows.
    TooManyActive { limit: u32 },
    /// The creates-per-minute bucket is empty; it has a token again in
    /// `retry_after_ms`.
    RateLimited { limit: u32, retry_after_ms: i64 },
    /// The day's creates are used up until the next UTC day.
    DailyLimit { limit: u32, retry_after_ms: i64 },
}
