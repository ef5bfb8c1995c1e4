# poshub U-Boot boot script: RAUC-style A/B slot selection with boot counting.
# Compiled to boot.scr (image/mkbootscr); U-Boot's distro boot finds it on partition 1
# (`config`). Runs the same on the Pi 4 (Debian u-boot-rpi, mmc) and in QEMU virt
# (u-boot-qemu, virtio): everything device-specific comes from ${devtype} ${devnum}
# (set by distro boot) and ${fdtfile}. Tested by image/tests/boot-script.sh in real U-Boot.
#
# Environment (shared with the supervisor's `uboot` backend, which writes it with fw_setenv):
#   BOOT_ORDER                 slots by preference, e.g. "A B"
#   BOOT_A_LEFT, BOOT_B_LEFT   attempts left; decremented and saved here BEFORE the kernel is
#                              loaded, so any failure from here on (bad kernel, hang, watchdog
#                              reset, power cut) costs one attempt. The supervisor refills the
#                              counter of a committed slot; a trial slot gets 1 attempt.
# Where the counters live: the file uboot.env on partition 1 (`config`, FAT), written here with
# `env export -c` + `fatwrite` and read back with `load` + `env import -c`. On the Pi that file
# IS U-Boot's own environment (Debian's u-boot-rpi: CONFIG_ENV_IS_IN_FAT, 0x4000 bytes), so this
# is what `saveenv` does there; on QEMU (environment in emulated flash, whose writes are broken
# in Debian 12's QEMU) the same code keeps the state in the same file. Linux reads and writes
# it with libubootenv (/etc/fw_env.config: /boot/firmware/uboot.env 0x0 0x4000). One code
# path on both boards, so the QEMU tests run exactly what the Pi runs.
#
# A slot X boots from the partition with GPT name bootX: Image (uncompressed arm64 kernel),
# initrd.img, cmdline.env (one line `bootargs_slot=...`) and, on the Pi, dtbs/${fdtfile}. The
# boot partition is the same for both slots (an update bundle carries it): this script appends
# `root=PARTLABEL=rootX rauc.slot=X`, so the kernel command line names the slot U-Boot actually
# chose, whatever the files say.

setenv poshub_envsize 0x4000
setenv poshub_envpart ${devnum}:1
# 0. Counters saved by an earlier power-on (or by the supervisor) override what U-Boot loaded.
if load ${devtype} ${poshub_envpart} ${kernel_addr_r} uboot.env; then
  if env import -c ${kernel_addr_r} ${poshub_envsize} BOOT_ORDER BOOT_A_LEFT BOOT_B_LEFT; then
    echo "poshub-boot: counters read from uboot.env"
  fi
fi

echo "poshub-boot: env BOOT_ORDER=${BOOT_ORDER} BOOT_A_LEFT=${BOOT_A_LEFT} BOOT_B_LEFT=${BOOT_B_LEFT}"

# The whole environment, as saveenv writes it on the Pi (CRC + variables, padded to the size).
setenv poshub_save 'env export -c -s ${poshub_envsize} ${kernel_addr_r} && fatwrite ${devtype} ${poshub_envpart} ${kernel_addr_r} uboot.env ${poshub_envsize} && echo "poshub-boot: saved"'

# 1. A fresh (or lost: bad CRC) environment starts with slot A preferred, 3 attempts each.
test -n "${BOOT_ORDER}" || setenv BOOT_ORDER "A B"
test -n "${BOOT_A_LEFT}" || setenv BOOT_A_LEFT 3
test -n "${BOOT_B_LEFT}" || setenv BOOT_B_LEFT 3

# 2. The first slot of BOOT_ORDER with attempts left wins; take one attempt from it.
#    (setexpr works in hex: fine for counters below 10.)
setenv poshub_slot
for s in ${BOOT_ORDER}; do
  if test -z "${poshub_slot}" -a "${s}" = "A"; then
    if test ${BOOT_A_LEFT} -gt 0; then
      setexpr BOOT_A_LEFT ${BOOT_A_LEFT} - 1
      setenv poshub_slot A
    fi
  fi
  if test -z "${poshub_slot}" -a "${s}" = "B"; then
    if test ${BOOT_B_LEFT} -gt 0; then
      setexpr BOOT_B_LEFT ${BOOT_B_LEFT} - 1
      setenv poshub_slot B
    fi
  fi
done

# 3. No slot left: both failed their attempts. Start over rather than stop a shop's till hub
#    for good (RAUC's choice too); the supervisor sees the failed trial in its journal.
if test -z "${poshub_slot}"; then
  echo "poshub-boot: no slot has attempts left; resetting both counters to 3"
  setenv BOOT_A_LEFT 3
  setenv BOOT_B_LEFT 3
  echo "poshub-boot: saving BOOT_ORDER=${BOOT_ORDER} BOOT_A_LEFT=${BOOT_A_LEFT} BOOT_B_LEFT=${BOOT_B_LEFT}"
  run poshub_save
  reset
fi

# 4. Persist the decremented counter before touching the slot. If saving fails the slot is
#    still booted: a card whose environment cannot be written should keep working; only the
#    fallback is lost, and the supervisor's fw_setenv calls would report the same fault.
echo "poshub-boot: slot ${poshub_slot} chosen"
echo "poshub-boot: saving BOOT_ORDER=${BOOT_ORDER} BOOT_A_LEFT=${BOOT_A_LEFT} BOOT_B_LEFT=${BOOT_B_LEFT}"
run poshub_save

# 5. Load the slot's command line, kernel, initrd (last: ${filesize} is its size) and, where
#    U-Boot names a board device tree (the Pi), the one matching the slot's kernel; QEMU's
#    generated tree otherwise. cmdline.env is loaded where the kernel goes next, and only
#    bootargs_slot is imported from it.
setenv poshub_loaded
setenv bootargs_slot
if part number ${devtype} ${devnum} boot${poshub_slot} poshub_bootpart; then
  setenv poshub_dev "${devnum}:${poshub_bootpart}"
  if load ${devtype} ${poshub_dev} ${kernel_addr_r} cmdline.env; then
    if env import -t ${kernel_addr_r} ${filesize} bootargs_slot; then
      if load ${devtype} ${poshub_dev} ${kernel_addr_r} Image; then
        if load ${devtype} ${poshub_dev} ${ramdisk_addr_r} initrd.img; then
          setenv poshub_initrd_size ${filesize}
          setenv poshub_loaded 1
        fi
      fi
    fi
  fi
fi
setenv poshub_fdt ${fdtcontroladdr}
if test -n "${fdtfile}"; then
  if load ${devtype} ${poshub_dev} ${fdt_addr_r} dtbs/${fdtfile}; then
    setenv poshub_fdt ${fdt_addr_r}
  fi
fi

# 6. Boot. booti only returns on failure: then reset, and the counter decides what is next.
if test -n "${poshub_loaded}" -a -n "${bootargs_slot}"; then
  setenv bootargs "${bootargs_slot} root=PARTLABEL=root${poshub_slot} rauc.slot=${poshub_slot}"
  echo "poshub-boot: booting slot ${poshub_slot}: ${bootargs}"
  booti ${kernel_addr_r} ${ramdisk_addr_r}:${poshub_initrd_size} ${poshub_fdt}
  echo "poshub-boot: slot ${poshub_slot}: kernel did not start"
else
  echo "poshub-boot: slot ${poshub_slot}: boot files missing or unreadable on boot${poshub_slot}"
fi
reset
