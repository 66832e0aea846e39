package service

import (
	"fmt"
	"os"
	"os/exec"
	"strings"

	kservice "github.com/kardianos/service"
)

// platformOptions installs goreplica's own unit (Unit) under systemd. The
// unit holds no "{{", so kardianos's template engine copies it unchanged.
func platformOptions(c Config) kservice.KeyValue {
	if c.ConfigPath == "" {
		return nil // control only
	}
	unit, err := Unit(c)
	if err != nil {
		return nil // Install checks c first
	}
	return kservice.KeyValue{"SystemdScript": unit}
}

func afterInstall(Config) []string { return nil }

// cleanupFailedInstall removes what kardianos leaves behind when a systemd
// install fails half-way (the unit file, possibly empty, and its enable
// link), so that the next install does not find "Init already exists".
func cleanupFailedInstall(c Config) {
	if Platform() != "linux-systemd" {
		return
	}
	for _, p := range []string{
		"/etc/systemd/system/multi-user.target.wants/" + c.Name + ".service",
		"/etc/systemd/system/" + c.Name + ".service",
	} {
		_ = os.Remove(p)
	}
}

// EnvironmentHint says where the service's environment variables go.
func EnvironmentHint(name string) string {
	return "NAME=value lines in " + environmentFile(name)
}

// statusAfterError tells the state of a System V init service, whose
// status kardianos reports as an error ("exit status 1") both when it is
// stopped and when it is not installed: the init script tells them apart.
func statusAfterError(name string) (State, bool) {
	if Platform() != "unix-systemv" {
		return NotInstalled, false
	}
	if _, err := os.Stat("/etc/init.d/" + name); err != nil {
		return NotInstalled, true
	}
	return Stopped, true
}

// platformStatus asks systemd itself for a unit's state: kardianos reports
// a unit that crashed and waits to be restarted ("activating",
// "auto-restart") as running.
func platformStatus(name string) (State, bool, error) {
	if Platform() != "linux-systemd" {
		return NotInstalled, false, nil
	}
	out, err := exec.Command("systemctl", "show", "--property=LoadState,ActiveState,SubState", name+".service").Output()
	if err != nil {
		return NotInstalled, true, fmt.Errorf("status of service %s: systemctl show: %w", name, err)
	}
	props := map[string]string{}
	for _, l := range strings.Split(string(out), "\n") {
		if k, v, ok := strings.Cut(l, "="); ok {
			props[k] = strings.TrimSpace(v)
		}
	}
	return systemdState(props["LoadState"], props["ActiveState"], props["SubState"]), true, nil
}

// systemdState maps a unit's load state, active state and sub-state
// (systemctl show) to a State.
func systemdState(load, active, sub string) State {
	switch {
	case load == "not-found" || load == "":
		return NotInstalled
	case active == "active" || active == "reloading":
		return Running
	case active == "activating" && sub == "auto-restart":
		return Restarting
	case active == "activating":
		return Running // starting: Type=notify, until the daemon says it is ready
	case active == "failed":
		return Failed
	}
	return Stopped // inactive, deactivating
}

// waitStarted has nothing to wait for: systemctl start of a Type=notify
// unit returns once the daemon is ready, or fails.
func waitStarted(string) error { return nil }
