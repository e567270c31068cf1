//! How virtual users behave: the weights of their actions, how they follow
//! the tasks they create, their think time. The scenario plan acts on these.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// The weights of a virtual user's actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mix {
    pub create: u32,
    pub get: u32,
    pub list: u32,
    pub gallery: u32,
}

impl Default for Mix {
    /// A person in the app mostly browses: one creation in ten actions.
    fn default() -> Self {
        Mix {
            create: 1,
            get: 2,
            list: 3,
            gallery: 4,
        }
    }
}

impl FromStr for Mix {
    type Err = String;

    /// `create=1,get=2,list=3,gallery=4` (missing names weigh 0).
    fn from_str(s: &str) -> Result<Self, String> {
        let mut mix = Mix {
            create: 0,
            get: 0,
            list: 0,
            gallery: 0,
        };
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, w) = part
                .split_once('=')
                .ok_or_else(|| format!("{part:?}: write it like create=1"))?;
            let w: u32 = w
                .trim()
                .parse()
                .map_err(|_| format!("{part:?}: the weight must be a whole number"))?;
            match name.trim() {
                "create" => mix.create = w,
                "get" => mix.get = w,
                "list" => mix.list = w,
                "gallery" => mix.gallery = w,
                other => {
                    return Err(format!(
                        "unknown action {other:?}; use create, get, list, gallery"
                    ));
                }
            }
        }
        if mix.total() == 0 {
            return Err("the weights add up to 0".into());
        }
        Ok(mix)
    }
}

impl fmt::Display for Mix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "create={},get={},list={},gallery={}",
            self.create, self.get, self.list, self.gallery
        )
    }
}

/// One thing a virtual user does, picked by [`Mix`]'s weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Action {
    Create,
    Get,
    List,
    Gallery,
}

impl Mix {
    fn total(&self) -> u32 {
        self.create + self.get + self.list + self.gallery
    }

    /// The action a random `roll` picks, each in proportion to its weight.
    pub(super) fn pick(&self, roll: u32) -> Action {
        let mut r = roll % self.total();
        for (w, a) in [
            (self.create, Action::Create),
            (self.get, Action::Get),
            (self.list, Action::List),
        ] {
            if r < w {
                return a;
            }
            r -= w;
        }
        Action::Gallery
    }
}

/// How a virtual user follows a task it created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Follow {
    /// `GET /v1/tasks/{id}` every poll interval.
    Poll,
    /// Long polls: `GET /v1/tasks/{id}?wait=30`.
    Wait,
    /// `GET /v1/tasks/{id}/events` until the final state.
    Sse,
}

impl FromStr for Follow {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "poll" => Ok(Follow::Poll),
            "wait" => Ok(Follow::Wait),
            "sse" => Ok(Follow::Sse),
            _ => Err(format!("{s:?}: one of poll, wait, sse")),
        }
    }
}

/// How virtual users (and the gengate scenarios) behave.
#[derive(Debug, Clone)]
pub struct UserOptions {
    pub mix: Mix,
    /// Mean pause between a virtual user's actions (exponentially
    /// distributed, capped at 4× the mean).
    pub think: Duration,
    pub follow: Follow,
    pub poll_interval: Duration,
    /// A created task not finished by then counts as unfinished.
    pub result_timeout: Duration,
    /// The model created tasks use.
    pub model: String,
}

impl Default for UserOptions {
    fn default() -> Self {
        UserOptions {
            mix: Mix::default(),
            think: Duration::from_secs(2),
            follow: Follow::Poll,
            poll_interval: Duration::from_secs(1),
            result_timeout: Duration::from_secs(600),
            model: "sim-image".into(),
        }
    }
}
