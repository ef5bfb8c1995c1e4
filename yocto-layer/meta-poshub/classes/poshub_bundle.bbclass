# poshub_bundle: makes the signed update bundle that poshub-supervisor installs into the
# inactive root slot, from the image's root filesystem (the ext4 that wic also writes to
# rootA), next to the other image files:
#   ${IMAGE_NAME}.ext4.poshub and the link ${IMAGE_LINK_NAME}.ext4.poshub
#
# Settings (local.conf, or the environment through kas/poshub-common.yml):
#   POSHUB_BUNDLE_KEY      ed25519 signing key made with `poshub-supervisor keygen`; keep it
#                          out of the repository and the layer (a build-server secret).
#                          Unset: the image builds without a bundle, with a warning, so a
#                          first `kas build` works on a machine without the key.
#   POSHUB_BUNDLE_VERSION  version in the manifest; the supervisor refuses downgrades, so a
#                          release build must raise it (default: DISTRO_VERSION).
#   POSHUB_BOARD           compatible board in the manifest: rpi4 / rpi5 for the two
#                          supported machines, else MACHINE.
#
# The command is `poshub-supervisor bundle create --key KEY --version V --board B
# --image ROOTFS --out FILE`, the interface agreed with the supervisor (written in parallel;
# if its flags change, do_poshub_bundle changes with them). It runs on the build host,
# hence poshub-supervisor-native.

POSHUB_BUNDLE_KEY ??= ""
POSHUB_BUNDLE_VERSION ??= "${DISTRO_VERSION}"
POSHUB_BOARD ??= "${@{'raspberrypi4-64': 'rpi4', 'raspberrypi5': 'rpi5'}.get(d.getVar('MACHINE'), d.getVar('MACHINE'))}"

do_poshub_bundle() {
    if [ -z "${POSHUB_BUNDLE_KEY}" ]; then
        bbwarn "POSHUB_BUNDLE_KEY is not set: no .poshub update bundle is made"
        return 0
    fi
    case "${POSHUB_BUNDLE_KEY}" in
        /*) ;;
        *) bbfatal "POSHUB_BUNDLE_KEY must be an absolute path, not '${POSHUB_BUNDLE_KEY}'" ;;
    esac
    cd ${IMGDEPLOYDIR}
    poshub-supervisor bundle create \
        --key "${POSHUB_BUNDLE_KEY}" \
        --version "${POSHUB_BUNDLE_VERSION}" \
        --board "${POSHUB_BOARD}" \
        --image ${IMAGE_NAME}.ext4 \
        --out ${IMAGE_NAME}.ext4.poshub
    ln -sf ${IMAGE_NAME}.ext4.poshub ${IMAGE_LINK_NAME}.ext4.poshub
}
do_poshub_bundle[doc] = "Signs the root filesystem into the .poshub update bundle"
# Without a key nothing is signed, so the native supervisor is not even built.
do_poshub_bundle[depends] += "${@'poshub-supervisor-native:do_populate_sysroot' if d.getVar('POSHUB_BUNDLE_KEY') else ''}"
do_poshub_bundle[prefuncs] += "extend_recipe_sysroot"
# IMGDEPLOYDIR is deployed by do_image_complete: the bundle must be there before it.
addtask poshub_bundle after do_image_ext4 before do_image_complete
