//! Install phases 6 to 8 (`docs/updates.md` §3), once both images are written and read back:
//! `mark` (the store records the new content and the trial), `arm` (the bootloader tries the
//! slot once at the next boot) and `reboot` (done by the caller, after stopping the hub).

use anyhow::Result;

use super::{enter, Progress, Target};
use crate::config::Config;
use crate::fsutil::now_unix;
use crate::lifecycle::Slots;
use crate::slots::store::{SlotState, Trial};

/// Phase 6, `mark`: the store records the new content and the armed trial (before the
/// bootloader, so a cut between the two leaves a trial that never started: the slot is then
/// marked bad).
pub(super) fn mark(cfg: &Config, slots: &Slots, progress: &Progress, t: &Target) -> Result<()> {
    enter(cfg, progress, "mark");
    let (m, target, booted) = (&t.vb.manifest, t.slot, t.booted);
    slots.store.update(|st| {
        let info = st.slot_mut(target);
        info.state = SlotState::Trying;
        info.sha256 = Some(m.image_sha256.clone());
        info.size = Some(m.image_size);
        info.installed_at = Some(now_unix());
        info.install_count += 1;
        if let Some((size, sha)) = m.boot_image() {
            st.log(
                &slots.boot_id,
                target,
                "install-boot",
                format!("boot partition written and verified ({size} bytes, sha256 {sha})"),
            );
        }
        st.trial = Some(Trial {
            slot: target,
            previous: booted,
            version: Some(m.version.clone()),
            armed_at: now_unix(),
            armed_boot_id: slots.boot_id.clone(),
            attempts: 0,
            boot_ids: Vec::new(),
            boot_started_uptime_ms: None,
        });
        let delta = match (m.delta_base(), m.delta_boot_base()) {
            (Some(_), Some(_)) => {
                format!(" (rebuilt from a delta against slot {booted} and its boot partition)")
            }
            (Some(_), None) => format!(" (rebuilt from a delta against slot {booted})"),
            _ => String::new(),
        };
        st.log(
            &slots.boot_id,
            target,
            "install",
            format!(
                "version {} written and verified{delta}; armed for one trial boot",
                m.version
            ),
        );
    })?;
    Ok(())
}

/// Phase 7, `arm`: the bootloader tries the slot once at the next boot.
pub(super) fn arm(cfg: &Config, slots: &Slots, progress: &Progress, t: &Target) -> Result<()> {
    enter(cfg, progress, "arm");
    slots.backend.arm_trial(t.slot, t.booted)?;
    Ok(())
}

/// Phase 8, `reboot`: recorded (and the test pause point); the caller stops the hub and
/// reboots, unless told not to.
pub(super) fn reboot(cfg: &Config, progress: &Progress) {
    enter(cfg, progress, "reboot");
}
