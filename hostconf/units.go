package hostconf

import (
	"path/filepath"
	"strings"

	"omens.dev/omens/registry"
)

// Units returns the systemd units for paths p: spire-server, spire-agent, omens-ra and
// omens-devid-renew (service and timer). They hold paths only; what differs between
// inventories (addresses, URLs) is in the environment files beside them, so the units
// of the default paths are the ones the package ships (deploy/systemd).
func Units(p registry.Paths) []File {
	var out []File
	for _, u := range []struct{ role, text string }{
		{RoleServerUnit, serverUnit(p)},
		{RoleAgentUnit, agentUnit(p)},
		{RoleRAUnit, raUnit(p)},
		{RoleRenewService, renewService(p)},
		{RoleRenewTimer, renewTimer},
	} {
		out = append(out, File{Role: u.role, Path: filepath.Join(p.UnitDir, u.role), Mode: 0o644, Data: []byte(u.text)})
	}
	return out
}

func unitsByRole(p registry.Paths) map[string]File {
	m := map[string]File{}
	for _, f := range Units(p) {
		m[f.Role] = f
	}
	return m
}

// command writes an ExecStart= line: the program and its subcommands, then one flag and
// its value per continued line.
func command(argv ...string) string {
	var b strings.Builder
	b.WriteString("ExecStart=" + argv[0])
	i := 1
	for ; i < len(argv) && !strings.HasPrefix(argv[i], "-"); i++ {
		b.WriteString(" " + argv[i])
	}
	for ; i < len(argv); i++ {
		b.WriteString(" \\\n    " + argv[i])
		if strings.HasPrefix(argv[i], "-") && i+1 < len(argv) && !strings.HasPrefix(argv[i+1], "-") {
			b.WriteString(" " + argv[i+1])
			i++
		}
	}
	return b.String() + "\n"
}

// writable gives a hardened service (ProtectSystem=strict) write access to dir: as a
// StateDirectory, which systemd creates, when it is under /var/lib; else ReadWritePaths,
// which must exist.
func writable(dir string) string {
	if s := stateDirectory(dir); s != "" {
		return s
	}
	return "ReadWritePaths=" + dir + "\n"
}

// stateDirectory has systemd create dir for a service, when it is under /var/lib (SPIRE
// does not create its data_dir).
func stateDirectory(dir string) string {
	if rel, ok := strings.CutPrefix(dir, "/var/lib/"); ok && rel != "" {
		return "StateDirectory=" + rel + "\nStateDirectoryMode=0700\n"
	}
	return ""
}

// deviceAllow lets a service with a device policy reach the TPM, when it is a device.
func deviceAllow(tpm string) string {
	if strings.HasPrefix(tpm, "/dev/") {
		return "DeviceAllow=" + tpm + " rw\n"
	}
	return ""
}

func serverUnit(p registry.Paths) string {
	return `# The SPIRE server, configured in ` + p.SPIREServerConf + ` (rendered by omens config render).
[Unit]
Description=SPIRE server
After=network-online.target
Wants=network-online.target

[Service]
` + command(filepath.Join(p.SPIREBinDir, "spire-server"), "run", "-config", p.SPIREServerConf) + stateDirectory(p.SPIREServerData) + `Restart=on-failure
RestartSec=5s
LimitNOFILE=65536

[Install]
WantedBy=multi-user.target
`
}

func agentUnit(p registry.Paths) string {
	return `# The SPIRE agent, configured in ` + p.SPIREAgentConf + ` (rendered by omens config render).
# An agent whose attestation is refused exits; it is started again until the server
# accepts it (a host on its way to a new phase, a boot state waiting for a window).
[Unit]
Description=SPIRE agent
After=network-online.target
Wants=network-online.target

[Service]
` + command(filepath.Join(p.SPIREBinDir, "spire-agent"), "run", "-config", p.SPIREAgentConf) + stateDirectory(p.SPIREAgentData) + `Restart=on-failure
RestartSec=10s

[Install]
WantedBy=multi-user.target
`
}

func raUnit(p registry.Paths) string {
	return `# The registration authority that enrolls DevID certificates through step-ca, beside it.
# Its settings (listen address, name, step-ca's URL and provisioner) are in
# ` + p.RAEnv + `; see omens ra serve --help.
[Unit]
Description=omens: registration authority for DevID certificates
After=network-online.target step-ca.service
Wants=network-online.target

[Service]
EnvironmentFile=` + p.RAEnv + `
` + command(filepath.Join(p.BinDir, "omens"), "ra", "serve",
		"--listen", "${OMENS_RA_LISTEN}", "--name", "${OMENS_RA_NAME}",
		"--state", p.RAState, "--ek-ca", p.EKCA,
		"--ca-url", "${OMENS_STEP_CA_URL}", "--ca-root", p.StepCARoot, "--ca-config", p.StepCAConfig,
		"--provisioner", "${OMENS_STEP_CA_PROVISIONER}", "--provisioner-password-file", p.ProvisionerPW) + `Restart=on-failure
RestartSec=5s
ProtectSystem=strict
` + writable(p.RAState) + `PrivateTmp=true
NoNewPrivileges=true

[Install]
WantedBy=multi-user.target
`
}

func renewService(p registry.Paths) string {
	return `# Renews this host's DevID certificate through the RA when two thirds of its life have
# passed; a no-op otherwise (see omens devid renew --help). Started by
# omens-devid-renew.timer; the RA's URL is in ` + p.DevIDEnv + `.
[Unit]
Description=omens: renew the DevID certificate when due
After=network-online.target
Wants=network-online.target

[Service]
Type=oneshot
EnvironmentFile=` + p.DevIDEnv + `
` + command(filepath.Join(p.BinDir, "omens"), "devid", "renew", "--tpm", p.TPM,
		"--ra", "${OMENS_RA}", "--ra-root", p.StepCARoot, "--dir", p.DevIDDir) + `# The TPM is the only secret holder: the service needs the device, not network-wide rights.
` + deviceAllow(p.TPM) + `ProtectSystem=strict
` + writable(p.DevIDDir) + `PrivateTmp=true
NoNewPrivileges=true
`
}

const renewTimer = `# Checks twice a day whether the DevID certificate is due; renewal happens at two thirds
# of its life (day 60 of 90), which leaves a month of retries.
[Unit]
Description=omens: check the DevID certificate twice a day

[Timer]
OnBootSec=10min
OnUnitActiveSec=12h
RandomizedDelaySec=30min
Persistent=true

[Install]
WantedBy=timers.target
`
