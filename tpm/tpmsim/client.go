package tpmsim

import (
	"encoding/json"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"time"
)

// Control sends one request to the control socket of the simulator serving socket.
func Control(socket string, req ControlRequest) (*Status, error) {
	path := socket + ".omens"
	c, err := net.DialTimeout("unix", path, 5*time.Second)
	if err != nil {
		return nil, fmt.Errorf("tpmsim: %w (is `omens tpm simulate --socket %s` running?)", err, socket)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Minute))
	if err := json.NewEncoder(c).Encode(req); err != nil {
		return nil, fmt.Errorf("tpmsim: control: %w", err)
	}
	var resp ControlResponse
	if err := json.NewDecoder(c).Decode(&resp); err != nil {
		return nil, fmt.Errorf("tpmsim: control: %w", err)
	}
	if resp.Error != "" {
		return nil, fmt.Errorf("%s", resp.Error)
	}
	return resp.Status, nil
}

// Reboot asks the simulator serving socket to reboot, first replacing the boot profile
// entries in set (PCR index to event strings).
func Reboot(socket string, set Profile) (*Status, error) {
	req := ControlRequest{Op: "reboot", Set: map[string][]string{}}
	for pcr, evs := range set {
		req.Set[strconv.Itoa(pcr)] = evs
	}
	return Control(socket, req)
}

// RebootFromLog asks the simulator serving socket to reboot into the boot the TCG event
// log at path records (Sim.RebootFromLog). The simulator reads path itself.
func RebootFromLog(socket, path string) (*Status, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("tpmsim: %w", err)
	}
	return Control(socket, ControlRequest{Op: "reboot", BootLog: abs})
}
