//! Request shaping at dispatch: context protection (a client's `num_ctx` must never force a
//! resident model to reload, reference §6.2) and the thinking-model output budget (§6.3).

use crate::config::{ContextProtection, PolicyConfig};

/// What context protection did, for traces and the `X-Herd-Context` header.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum ContextAction {
    /// Nothing to do (model not resident, or passthrough).
    Untouched,
    /// `num_ctx` was absent or smaller: set to the resident window.
    Pinned {
        /// The resident window.
        resident: u32,
    },
    /// The client asked for more than is resident: held at the resident window to avoid a
    /// reload. `overflow` when the estimated prompt+output does not fit it.
    Clamped {
        /// What the client asked for.
        requested: u32,
        /// The resident window.
        resident: u32,
        /// Estimated tokens exceed the window.
        overflow: bool,
    },
    /// `warn` mode: the client's larger window goes through and will reload the model.
    Warned {
        /// What the client asked for.
        requested: u32,
        /// The resident window.
        resident: u32,
    },
}

/// Inputs to shaping for one attempt on one node.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct ShapeInput {
    /// The client's `options.num_ctx`.
    pub client_num_ctx: Option<u32>,
    /// The model's loaded window on the target node (None when not loaded or unknown).
    pub resident_ctx: Option<u32>,
    /// Estimated prompt tokens.
    pub estimated_tokens: u32,
    /// The client's output budget.
    pub max_output: Option<u32>,
    /// The client's `think`.
    pub think: Option<bool>,
    /// Whether the served model is a thinking model.
    pub thinking_model: bool,
}

/// The body changes for one attempt.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Shape {
    /// Set `options.num_ctx` to this (None = leave the client's value alone).
    pub num_ctx: Option<u32>,
    /// Set `options.num_predict` to this (None = leave alone).
    pub num_predict: Option<u32>,
    /// What context protection did.
    pub context: ContextAction,
}

/// Computes the changes for one attempt.
pub fn shape(c: &PolicyConfig, i: &ShapeInput) -> Shape {
    let (num_ctx, context) = match (c.context_protection, i.resident_ctx.filter(|&r| r > 0), i.client_num_ctx) {
        (ContextProtection::Passthrough, _, _) | (_, None, _) => (None, ContextAction::Untouched),
        (ContextProtection::Strip, Some(r), None) => (Some(r), ContextAction::Pinned { resident: r }),
        (_, Some(r), Some(n)) if n <= r => match c.context_protection {
            ContextProtection::Strip => (Some(r), ContextAction::Pinned { resident: r }),
            _ => (None, ContextAction::Untouched),
        },
        (ContextProtection::Strip, Some(r), Some(n)) => {
            let need = u64::from(i.estimated_tokens) + u64::from(i.max_output.unwrap_or(0));
            (Some(r), ContextAction::Clamped { requested: n, resident: r, overflow: need > u64::from(r) })
        }
        (ContextProtection::Warn, Some(r), Some(n)) => (None, ContextAction::Warned { requested: n, resident: r }),
        (ContextProtection::Warn, Some(_), None) => (None, ContextAction::Untouched),
    };
    let num_predict = match i.max_output {
        Some(n) if i.thinking_model && i.think != Some(false) => Some(thinking_budget(n, c)),
        _ => None,
    };
    Shape { num_ctx, num_predict, context }
}

/// `max(num_predict × overhead, min)`: thinking tokens count against the output budget, so a
/// budget sized for the answer alone would cut the answer off (reference §6.3).
pub fn thinking_budget(num_predict: u32, c: &PolicyConfig) -> u32 {
    // `as` saturates (and maps NaN to 0), which is the rule we want.
    let inflated = (f64::from(num_predict) * c.thinking_overhead) as u32;
    inflated.max(c.thinking_min_predict)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn i(client: Option<u32>, resident: Option<u32>) -> ShapeInput {
        ShapeInput { client_num_ctx: client, resident_ctx: resident, estimated_tokens: 1000, ..Default::default() }
    }

    #[test]
    fn strip_pins_every_request_to_the_resident_window() {
        let c = PolicyConfig::default();
        assert_eq!(shape(&c, &i(None, Some(8192))).num_ctx, Some(8192));
        assert_eq!(shape(&c, &i(Some(4096), Some(8192))).num_ctx, Some(8192));
        let s = shape(&c, &i(Some(32768), Some(8192)));
        assert_eq!(s.num_ctx, Some(8192));
        assert_eq!(s.context, ContextAction::Clamped { requested: 32768, resident: 8192, overflow: false });
        let big = ShapeInput { estimated_tokens: 9000, ..i(Some(32768), Some(8192)) };
        assert_eq!(
            shape(&c, &big).context,
            ContextAction::Clamped { requested: 32768, resident: 8192, overflow: true }
        );
        // Not loaded: nothing to protect; the client's value loads the model.
        assert_eq!(shape(&c, &i(Some(32768), None)).num_ctx, None);
    }

    #[test]
    fn warn_and_passthrough_leave_the_client_alone() {
        let warn = PolicyConfig { context_protection: ContextProtection::Warn, ..PolicyConfig::default() };
        let s = shape(&warn, &i(Some(32768), Some(8192)));
        assert_eq!((s.num_ctx, s.context), (None, ContextAction::Warned { requested: 32768, resident: 8192 }));
        let pass = PolicyConfig { context_protection: ContextProtection::Passthrough, ..PolicyConfig::default() };
        assert_eq!(shape(&pass, &i(None, Some(8192))).num_ctx, None);
    }

    #[test]
    fn thinking_models_get_a_bigger_budget() {
        let c = PolicyConfig::default();
        let think = ShapeInput { max_output: Some(32000), thinking_model: true, ..Default::default() };
        assert_eq!(shape(&c, &think).num_predict, Some(128_000));
        let small = ShapeInput { max_output: Some(100), thinking_model: true, ..Default::default() };
        assert_eq!(shape(&c, &small).num_predict, Some(1024));
        let off = ShapeInput { think: Some(false), ..think };
        assert_eq!(shape(&c, &off).num_predict, None);
        let plain = ShapeInput { thinking_model: false, ..think };
        assert_eq!(shape(&c, &plain).num_predict, None);
        assert_eq!(thinking_budget(u32::MAX, &c), u32::MAX);
        assert_eq!(thinking_budget(300, &c), 1200);
        let odd = PolicyConfig { thinking_overhead: 1.5, thinking_min_predict: 0, ..PolicyConfig::default() };
        assert_eq!(thinking_budget(333, &odd), 499);
    }
}
