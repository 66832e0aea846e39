//go:build windows

package pgserver_test

import "os/exec"

func setpgid(*exec.Cmd) {}
