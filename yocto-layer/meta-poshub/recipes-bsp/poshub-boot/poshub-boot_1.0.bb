SUMMARY = "Raspberry Pi tryboot A/B boot files for the poshub image"
DESCRIPTION = "Deploys autoboot.txt for the config partition and one cmdline.txt per \
               boot slot, each naming its own root partition; poshub-rpi-ab.wks puts \
               them in place."
SECTION = "bsp"
LICENSE = "MIT"
LIC_FILES_CHKSUM = "file://${COMMON_LICENSE_DIR}/MIT;md5=0835ade698e0bcf8506ecda2f7b4f302"

# The firmware reads autoboot.txt from partition 1 (config): partition 2 (bootA) normally,
# partition 3 (bootB) for one boot after `reboot "0 tryboot"`. The supervisor's rpi-tryboot
# backend commits slot B by swapping the two numbers.
SRC_URI = "file://autoboot.txt"
S = "${UNPACKDIR}"

COMPATIBLE_MACHINE = "^rpi$"
INHIBIT_DEFAULT_DEPS = "1"

inherit deploy nopackages

# Kernel command line of each slot: its root by GPT partition name (poshub-rpi-ab.wks),
# mounted read-only. With ENABLE_UART (poshub-os distro) the kernel console goes to the
# machine's serial console, where the getty runs too (SERIAL_CONSOLES "115200;ttyS0" on a
# Pi 4: GPIO 14/15; "115200;ttyAMA10" on a Pi 5: the debug UART header). The last
# console= is /dev/console: the serial one, as the box has no screen in the field.
POSHUB_CMDLINE_SERIAL = "${@' '.join('console=%s,%s' % (c.split(';')[1], c.split(';')[0]) for c in (d.getVar('SERIAL_CONSOLES') or '').split()) if d.getVar('ENABLE_UART') == '1' else ''}"
POSHUB_CMDLINE = "console=tty1 ${POSHUB_CMDLINE_SERIAL} rootfstype=ext4 ro rootwait fsck.repair=yes net.ifnames=0"

do_compile() {
    echo "root=PARTLABEL=rootA ${POSHUB_CMDLINE}" > ${B}/cmdline-a.txt
    echo "root=PARTLABEL=rootB ${POSHUB_CMDLINE}" > ${B}/cmdline-b.txt
}

do_deploy() {
    install -d ${DEPLOYDIR}/poshub-boot
    install -m 0644 ${S}/autoboot.txt ${B}/cmdline-a.txt ${B}/cmdline-b.txt ${DEPLOYDIR}/poshub-boot/
}

addtask deploy after do_compile before do_build

PACKAGE_ARCH = "${MACHINE_ARCH}"
