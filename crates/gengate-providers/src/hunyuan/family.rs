//! The two operation families, image and video: the actions, service,
//! version and host a job's requests use, how long its result URLs live, and
//! the provider task ids that remember which family made a job.

use std::time::Duration;

use gengate_core::ModelKind;

/// The two operation families: which actions, service, version and host a
/// job's requests use, and how long its result URLs live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Family {
    Image,
    Video,
}

impl Family {
    pub(super) fn from_endpoint(endpoint: Option<&str>, kind: ModelKind) -> Option<Family> {
        match endpoint {
            None => Some(match kind {
                ModelKind::Image => Family::Image,
                ModelKind::Video => Family::Video,
            }),
            Some("image") => Some(Family::Image),
            Some("video") => Some(Family::Video),
            Some(_) => None,
        }
    }

    pub(super) fn name(self) -> &'static str {
        match self {
            Family::Image => "image",
            Family::Video => "video",
        }
    }

    pub(super) fn service(self) -> &'static str {
        match self {
            Family::Image => "hunyuan",
            Family::Video => "vclm",
        }
    }

    pub(super) fn version(self) -> &'static str {
        match self {
            Family::Image => "2023-09-01",
            Family::Video => "2024-05-23",
        }
    }

    pub(super) fn submit_action(self) -> &'static str {
        match self {
            Family::Image => "SubmitHunyuanImageJob",
            Family::Video => "SubmitHunyuanToVideoJob",
        }
    }

    pub(super) fn query_action(self) -> &'static str {
        match self {
            Family::Image => "QueryHunyuanImageJob",
            Family::Video => "DescribeHunyuanToVideoJob",
        }
    }

    /// How long a result URL lives, per the API docs (image 1 h, video 24 h).
    pub(super) fn url_lifetime(self) -> Duration {
        match self {
            Family::Image => Duration::from_secs(3600),
            Family::Video => Duration::from_secs(24 * 3600),
        }
    }

    /// The provider task id of job `job_id` of this family.
    pub(super) fn task_id(self, job_id: &str) -> String {
        format!("{}:{job_id}", self.name())
    }

    /// Splits a provider task id into its family and Tencent's `JobId`.
    pub(super) fn parse_task_id(id: &str) -> Option<(Family, &str)> {
        let (family, job_id) = id.split_once(':')?;
        let family = match family {
            "image" => Family::Image,
            "video" => Family::Video,
            _ => return None,
        };
        (!job_id.is_empty()).then_some((family, job_id))
    }
}
