//! The operation a task was created with (text→video, image→video,
//! image), which names its collection path and tags its provider task id.

use gengate_core::ModelKind;

use crate::ProviderError;

/// The operation a task was created with; it must be queried under the same
/// collection path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Family {
    Text2Video,
    Image2Video,
    Image,
}

impl Family {
    const ALL: [Family; 3] = [Family::Text2Video, Family::Image2Video, Family::Image];

    /// The endpoint name in model configs, and the prefix of our task ids.
    pub(super) fn name(self) -> &'static str {
        match self {
            Family::Text2Video => "text2video",
            Family::Image2Video => "image2video",
            Family::Image => "image",
        }
    }

    /// The collection path: POST creates, GET lists, GET `/{task_id}` queries.
    pub(super) fn path(self) -> &'static str {
        match self {
            Family::Text2Video => "/v1/videos/text2video",
            Family::Image2Video => "/v1/videos/image2video",
            Family::Image => "/v1/images/generations",
        }
    }

    pub(super) fn parse(name: &str) -> Option<Family> {
        Family::ALL.into_iter().find(|f| f.name() == name)
    }

    pub(super) fn of(endpoint: Option<&str>, kind: ModelKind) -> Result<Family, ProviderError> {
        match endpoint {
            None => Ok(match kind {
                ModelKind::Image => Family::Image,
                ModelKind::Video => Family::Text2Video,
            }),
            Some(name) => Family::parse(name).ok_or(ProviderError::Unsupported),
        }
    }

    pub(super) fn tag(self, task_id: &str) -> String {
        format!("{}:{task_id}", self.name())
    }

    pub(super) fn untag(provider_task_id: &str) -> Option<(Family, &str)> {
        let (family, id) = provider_task_id.split_once(':')?;
        Some((Family::parse(family)?, id)).filter(|(_, id)| !id.is_empty())
    }
}
