package service

import (
	"os"

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
