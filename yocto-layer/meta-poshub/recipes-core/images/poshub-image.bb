SUMMARY = "poshub appliance image for Raspberry Pi 4/5"
DESCRIPTION = "Read-only root with poshub and poshub-supervisor, data partition, hardware \
               watchdog, capped persistent journal, provisioning from poshub.env; A/B \
               slots selected by the Raspberry Pi firmware's tryboot (poshub-rpi-ab.wks); \
               the signed .poshub update bundle of the same root (poshub_bundle.bbclass)."
SECTION = "images"
LICENSE = "MIT"

# Distro-level settings that cannot live in an image recipe, because other recipes read
# them (systemd as init, /var/log on the root, ENABLE_UART, RPI_EXTRA_CONFIG for
# config.txt), are in conf/distro/poshub-os.conf.

inherit core-image poshub_bundle

IMAGE_FEATURES += "read-only-rootfs"
IMAGE_LINGUAS = ""

# poshub-system: the units of systemd/ (supervisor, /data and /boot/firmware mounts with
# fsck, growth, provisioning, watchdog and journald drop-ins). MACHINE_EXTRA_RRECOMMENDS:
# what meta-raspberrypi's machines recommend (kernel modules, udev rules, Wi-Fi firmware),
# which only packagegroup-base would otherwise bring in.
IMAGE_INSTALL = "\
    packagegroup-core-boot \
    poshub \
    poshub-supervisor \
    poshub-system \
    ca-certificates \
    ${MACHINE_EXTRA_RRECOMMENDS} \
    ${CORE_IMAGE_EXTRA_INSTALL} \
"

# --- Disk image --------------------------------------------------------------------------
# ext4: the root filesystem (rootA in the .wic, and the payload of the .poshub bundle).
IMAGE_FSTYPES = "ext4 wic.bz2 wic.bmap"
WKS_FILE = "poshub-rpi-ab.wks"
# The root slots are 1536 MiB (poshub-rpi-ab.wks): fail the build, not a field update,
# when the root outgrows them (KiB).
IMAGE_ROOTFS_MAXSIZE = "1572864"

# Contents of the three FAT partitions, by wic --label. Boot A and B get the normal
# Raspberry Pi boot files (firmware, kernel, DTBs, config.txt with RPI_EXTRA_CONFIG); the
# cmdline.txt of meta-raspberrypi (from bootfiles/*) is then overwritten by the slot's own,
# which names its root partition (wic installs the entries in this order).
IMAGE_BOOT_FILES_label-config = "poshub-boot/autoboot.txt;autoboot.txt"
IMAGE_BOOT_FILES_label-boota = "${IMAGE_BOOT_FILES} poshub-boot/cmdline-a.txt;cmdline.txt"
IMAGE_BOOT_FILES_label-bootb = "${IMAGE_BOOT_FILES} poshub-boot/cmdline-b.txt;cmdline.txt"
# wic's tools only. openembedded-core's default adds the EFI bootloaders of the target
# architecture (aarch64: grub-efi, systemd-boot) and, on an x86 build host, syslinux-native:
# the Pi boots from its own firmware, the .wks has no EFI or syslinux partition, so building
# them is wasted work (WKS_FILE_DEPENDS is ??= in image_types_wic.bbclass: this assignment
# replaces it, and no :aarch64 override of the class reaches it).
WKS_FILE_DEPENDS = "${WKS_FILE_DEPENDS_DEFAULT}"
WKS_FILE_DEPENDS_DEFAULT:remove = "syslinux-native"
# wic sees bitbake variables only through WICVARS.
WICVARS:append = " IMAGE_BOOT_FILES_label-config IMAGE_BOOT_FILES_label-boota IMAGE_BOOT_FILES_label-bootb"
do_image_wic[depends] += "poshub-boot:do_deploy"
