SUMMARY = "poshub appliance systemd units, provisioning and data partition setup"
DESCRIPTION = "The units of the repository's systemd/ directory: the supervisor service, \
               poshub@.service, the /data and /boot/firmware mounts with fsck, growth of \
               the data partition, provisioning from poshub.env, hardware watchdog and \
               journald drop-ins, Tailscale enrolment."
SECTION = "base"
LICENSE = "Apache-2.0"
LIC_FILES_CHKSUM = "file://${COMMON_LICENSE_DIR}/Apache-2.0;md5=89aea4e17d99a7cacdbeed46a0096b10"

# systemd/ at the root of the repository this layer lives in (POSHUB_REPO_DIR, layer.conf),
# so the Yocto and Debian images install the same files (hence FILESEXTRAPATHS in a recipe).
# nooelint: oelint.vars.fileextrapaths, oelint.vars.outofcontext
FILESEXTRAPATHS:prepend := "${POSHUB_REPO_DIR}/systemd:"
SRC_URI = "\
    file://poshub-supervisor.service \
    file://poshub@.service \
    file://data.mount \
    file://boot-firmware.mount \
    file://var-log.mount \
    file://var-log-journal.mount \
    file://poshub-data-layout.service \
    file://poshub-growdata.service \
    file://poshub-provision.service \
    file://libexec/poshub-growdata \
    file://libexec/poshub-provision \
    file://poshub-tailscale-up.service \
    file://libexec/poshub-tailscale-up \
    file://tailscale/tailscaled-poshub.conf \
    file://supervisor.env \
    file://system.conf.d/poshub-watchdog.conf \
    file://journald.conf.d/poshub.conf \
    file://sysusers.d/poshub.conf \
    file://wifi/wpa_supplicant-poshub.conf \
    file://resolved.conf.d/poshub.conf \
    file://wifi/20-wired.network \
    file://wifi/25-wireless.network \
    file://wifi/80-poshub-wifi.rules \
    file://README.md \
"
S = "${UNPACKDIR}"

inherit systemd useradd allarch

SYSTEMD_SERVICE:${PN} = "\
    poshub-supervisor.service \
    data.mount \
    boot-firmware.mount \
    var-log.mount \
    var-log-journal.mount \
    poshub-data-layout.service \
    poshub-growdata.service \
    poshub-provision.service \
    poshub-tailscale-up.service \
"
# poshub@.service is a template: enabled per realm on the device (systemctl enable poshub@x).
SYSTEMD_AUTO_ENABLE = "enable"

# The hub's user, created at build time: the root is read-only, so systemd-sysusers cannot
# add it at boot. Same fields as sysusers.d/poshub.conf (checked by systemd_sysusers_check).
USERADD_PACKAGES = "${PN}"
USERADD_PARAM:${PN} = "--system --user-group --home-dir /data/poshub --no-create-home \
                       --comment 'poshub hub' --shell ${sbindir}/nologin poshub"

do_install() {
    install -d ${D}${systemd_system_unitdir}
    for unit in poshub-supervisor.service poshub@.service data.mount boot-firmware.mount \
                var-log.mount var-log-journal.mount poshub-data-layout.service poshub-growdata.service \
                poshub-provision.service poshub-tailscale-up.service; do
        install -m 0644 ${S}/$unit ${D}${systemd_system_unitdir}/
    done
    install -d ${D}${libexecdir}/poshub
    install -m 0755 ${S}/libexec/poshub-growdata ${S}/libexec/poshub-provision \
        ${S}/libexec/poshub-tailscale-up ${D}${libexecdir}/poshub/
    # Tailscale (POSHUB_TAILSCALE below): tailscaled's state on /data, enrolment from TS_* in
    # poshub.env. Both inert on an image without the tailscale package.
    install -D -m 0644 ${S}/tailscale/tailscaled-poshub.conf \
        ${D}${systemd_system_unitdir}/tailscaled.service.d/poshub.conf
    install -D -m 0644 ${S}/system.conf.d/poshub-watchdog.conf ${D}${systemd_unitdir}/system.conf.d/poshub-watchdog.conf
    install -D -m 0644 ${S}/journald.conf.d/poshub.conf ${D}${systemd_unitdir}/journald.conf.d/poshub.conf
    install -D -m 0644 ${S}/resolved.conf.d/poshub.conf ${D}${systemd_unitdir}/resolved.conf.d/poshub.conf
    install -D -m 0644 ${S}/sysusers.d/poshub.conf ${D}${nonarch_libdir}/sysusers.d/poshub.conf
    install -D -m 0644 ${S}/supervisor.env ${D}${datadir}/poshub/supervisor.env
    # Wi-Fi from WIFI_* in poshub.env (poshub-provision writes the configuration in /run).
    install -D -m 0644 ${S}/wifi/wpa_supplicant-poshub.conf \
        ${D}${systemd_system_unitdir}/wpa_supplicant@wlan0.service.d/poshub.conf
    install -D -m 0644 ${S}/wifi/20-wired.network ${D}${nonarch_libdir}/systemd/network/20-wired.network
    install -D -m 0644 ${S}/wifi/25-wireless.network ${D}${nonarch_libdir}/systemd/network/25-wireless.network
    install -D -m 0644 ${S}/wifi/80-poshub-wifi.rules ${D}${nonarch_base_libdir}/udev/rules.d/80-poshub-wifi.rules
    install -d ${D}${sysconfdir}/wpa_supplicant
    ln -sf /run/poshub/wpa_supplicant-wlan0.conf ${D}${sysconfdir}/wpa_supplicant/wpa_supplicant-wlan0.conf
    # (Units name it in Documentation=; it lands in the -doc package.)
    install -D -m 0644 ${S}/README.md ${D}${docdir}/poshub/systemd.md
    # Written at every boot by poshub-provision (defaults + provisioned overrides).
    install -d ${D}${sysconfdir}/poshub
    ln -sf /run/poshub/supervisor.env ${D}${sysconfdir}/poshub/supervisor.env
    # Mount points on the read-only root (/var/log: a real directory, see poshub-os.conf).
    install -d ${D}/data ${D}/boot/firmware ${D}${localstatedir}/log
}

FILES:${PN} += "\
    ${systemd_unitdir}/system.conf.d \
    ${systemd_unitdir}/journald.conf.d \
    ${systemd_unitdir}/resolved.conf.d \
    ${nonarch_libdir}/sysusers.d \
    ${datadir}/poshub \
    ${systemd_system_unitdir}/wpa_supplicant@wlan0.service.d \
    ${systemd_system_unitdir}/tailscaled.service.d \
    ${nonarch_libdir}/systemd/network \
    ${nonarch_base_libdir}/udev/rules.d \
    /data \
    /boot/firmware \
    ${localstatedir}/log \
"

# POSHUB_TAILSCALE = "1" (local.conf or the distro) puts Tailscale into the image: a layer
# that provides the `tailscale` package must then be in BBLAYERS (README.md, "Tailscale").
# Off by default, so the layer parses and builds without one.
POSHUB_TAILSCALE ??= "0"

# growdata: sfdisk, partx, resize2fs; the mounts: e2fsck and fsck.vfat via systemd-fsck@;
# tailscale with POSHUB_TAILSCALE = "1".
RDEPENDS:${PN} = "\
    ${@'tailscale' if d.getVar('POSHUB_TAILSCALE') == '1' else ''} \
    dosfstools \
    e2fsprogs-e2fsck \
    e2fsprogs-resize2fs \
    poshub-supervisor \
    util-linux-partx \
    util-linux-sfdisk \
    wpa-supplicant \
"
