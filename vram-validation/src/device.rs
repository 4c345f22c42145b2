//! Device indices and shard positions.

use serde::{Deserialize, Serialize};

use crate::ValidationError;

/// The largest number of shards one model may be split into.
pub const MAX_SHARDS: u32 = 1024;

/// Checks that `index` names one of `device_count` devices (`index < device_count`).
///
/// # Errors
///
/// [`ValidationError::NoDevices`] when `device_count` is zero,
/// [`ValidationError::DeviceIndexOutOfRange`] otherwise.
///
/// ```
/// use vram_validation::validate_device_index;
/// assert_eq!(validate_device_index(1, 2), Ok(1));
/// assert!(validate_device_index(2, 2).is_err());
/// ```
pub fn validate_device_index(index: u32, device_count: u32) -> Result<u32, ValidationError> {
    if device_count == 0 {
        return Err(ValidationError::NoDevices { index });
    }
    if index >= device_count {
        return Err(ValidationError::DeviceIndexOutOfRange {
            index,
            device_count,
        });
    }
    Ok(index)
}

/// Shard `index` of `total` (zero-based), with `index < total <= MAX_SHARDS`.
///
/// Both fit in a `u16`, which is how the accessors return them and how a seal
/// encodes them; [`ShardPosition::new`] takes `u32` so that callers can pass
/// unchecked counts without a lossy cast.
///
/// Deserialisation checks the same rules as [`ShardPosition::new`].
///
/// ```
/// use vram_validation::ShardPosition;
/// let p = ShardPosition::new(2, 8)?;
/// assert_eq!((p.index(), p.total()), (2, 8));
/// assert_eq!(p.to_string(), "2/8");
/// assert!(ShardPosition::new(8, 8).is_err());
/// # Ok::<(), vram_validation::ValidationError>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize, Deserialize)]
#[serde(try_from = "RawShardPosition")]
pub struct ShardPosition {
    index: u16,
    total: u16,
}

/// The unchecked wire form of a [`ShardPosition`].
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawShardPosition {
    index: u32,
    total: u32,
}

impl ShardPosition {
    /// A model that is not split: shard 0 of 1.
    pub const SINGLE: ShardPosition = ShardPosition { index: 0, total: 1 };

    /// Checks and builds a position.
    ///
    /// # Errors
    ///
    /// [`ValidationError::ShardTotalOutOfRange`] unless `1 <= total <= MAX_SHARDS`,
    /// [`ValidationError::ShardIndexOutOfRange`] unless `index < total`.
    pub fn new(index: u32, total: u32) -> Result<ShardPosition, ValidationError> {
        let total16 = u16::try_from(total)
            .ok()
            .filter(|t| *t >= 1 && u32::from(*t) <= MAX_SHARDS)
            .ok_or(ValidationError::ShardTotalOutOfRange {
                total,
                max: MAX_SHARDS,
            })?;
        let index16 = u16::try_from(index)
            .ok()
            .filter(|i| *i < total16)
            .ok_or(ValidationError::ShardIndexOutOfRange { index, total })?;
        Ok(ShardPosition {
            index: index16,
            total: total16,
        })
    }

    /// Zero-based index of this shard.
    #[must_use]
    pub fn index(&self) -> u16 {
        self.index
    }

    /// Number of shards in the model.
    #[must_use]
    pub fn total(&self) -> u16 {
        self.total
    }
}

impl TryFrom<RawShardPosition> for ShardPosition {
    type Error = ValidationError;
    fn try_from(raw: RawShardPosition) -> Result<Self, Self::Error> {
        ShardPosition::new(raw.index, raw.total)
    }
}

impl std::fmt::Display for ShardPosition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.total)
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;

    #[test]
    fn device_index_bounds() {
        assert_eq!(validate_device_index(0, 1), Ok(0));
        assert_eq!(validate_device_index(7, 8), Ok(7));
        assert_eq!(
            validate_device_index(0, 0),
            Err(ValidationError::NoDevices { index: 0 })
        );
        let err = validate_device_index(8, 8).unwrap_err();
        assert_eq!(
            err.to_string(),
            "device index 8 is out of range: 8 devices (valid: 0..=7)"
        );
        assert!(validate_device_index(u32::MAX, u32::MAX).is_err());
    }

    #[test]
    fn shard_position_bounds() {
        assert_eq!(ShardPosition::new(0, 1), Ok(ShardPosition::SINGLE));
        assert_eq!(ShardPosition::new(1023, 1024).map(|p| p.index()), Ok(1023));
        assert!(matches!(
            ShardPosition::new(0, 0),
            Err(ValidationError::ShardTotalOutOfRange { total: 0, .. })
        ));
        assert!(matches!(
            ShardPosition::new(0, 1025),
            Err(ValidationError::ShardTotalOutOfRange { total: 1025, .. })
        ));
        assert!(matches!(
            ShardPosition::new(0, 65_537),
            Err(ValidationError::ShardTotalOutOfRange { .. })
        ));
        assert!(matches!(
            ShardPosition::new(4, 4),
            Err(ValidationError::ShardIndexOutOfRange { index: 4, total: 4 })
        ));
        assert!(matches!(
            ShardPosition::new(u32::MAX, 4),
            Err(ValidationError::ShardIndexOutOfRange { .. })
        ));
    }
}
