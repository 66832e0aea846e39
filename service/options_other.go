//go:build !linux && !windows

package service

import kservice "github.com/kardianos/service"

func platformOptions(Config) kservice.KeyValue { return nil }

func afterInstall(Config) []string { return nil }

func cleanupFailedInstall(Config) {}

// EnvironmentHint says where the service's environment variables go.
func EnvironmentHint(string) string { return "in the environment of the service manager" }

func statusAfterError(string) (State, bool) { return NotInstalled, false }

func platformStatus(string) (State, bool, error) { return NotInstalled, false, nil }

// waitStarted has nothing to wait for here.
func waitStarted(string) error { return nil }
