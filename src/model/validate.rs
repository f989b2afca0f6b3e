//! Validation of one entity on its own, before a command is proposed:
//! Kong's field rules (types were already checked by serde).
//!
//! PLACEHOLDER (to be completed by the model work): accepts everything.

use super::command::Entity;
use super::errors::ApplyError;

/// Checks the entity's fields, returning Kong's schema-violation error.
pub fn validate_entity(_entity: &Entity) -> Result<(), ApplyError> {
    Ok(())
}
