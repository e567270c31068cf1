//! The scenarios bench can run, by the names the command line uses.

use std::fmt;
use std::str::FromStr;

/// A scenario by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    Raw,
    Health,
    GetTask,
    List,
    Gallery,
    Create,
    Mixed,
}

impl Scenario {
    pub const ALL: [Scenario; 7] = [
        Scenario::Raw,
        Scenario::Health,
        Scenario::GetTask,
        Scenario::List,
        Scenario::Gallery,
        Scenario::Create,
        Scenario::Mixed,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::Raw => "raw",
            Scenario::Health => "health",
            Scenario::GetTask => "get-task",
            Scenario::List => "list",
            Scenario::Gallery => "gallery",
            Scenario::Create => "create",
            Scenario::Mixed => "mixed",
        }
    }

    /// Whether it needs users and keys made through the admin API.
    pub fn needs_users(self) -> bool {
        matches!(
            self,
            Scenario::GetTask | Scenario::List | Scenario::Create | Scenario::Mixed
        )
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Scenario {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Scenario::ALL
            .into_iter()
            .find(|sc| sc.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = Scenario::ALL.iter().map(|s| s.name()).collect();
                format!("unknown scenario {s:?}; one of {}", names.join(", "))
            })
    }
}
