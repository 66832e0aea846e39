package replicator

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"testing"
)

func TestOwnerDead(t *testing.T) {
	live := newLeaseOwner()
	liveOwners.Store(live, true)
	defer liveOwners.Delete(live)
	gone := newLeaseOwner() // of this process, but no worker holds it
	exited := ""
	if runtime.GOOS != "windows" {
		cmd := exec.Command("true")
		if err := cmd.Run(); err == nil {
			exited = fmt.Sprintf("%s pid %d token 0123456789ab", thisHost(), cmd.ProcessState.Pid())
		}
	}
	type ownerCase struct {
		name  string
		owner string
		dead  bool
	}
	tests := []ownerCase{
		{"a worker of this process", live, false},
		{"this process, no worker", gone, true},
		{"another live process on this host", fmt.Sprintf("%s pid %d token 0123456789ab", thisHost(), os.Getppid()), false},
		{"another host", fmt.Sprintf("%s-elsewhere pid 1 token 0123456789ab", thisHost()), false},
		{"not written by goreplica", "someone", false},
	}
	if exited != "" {
		tests = append(tests, ownerCase{"an exited process on this host", exited, true})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ownerDead(tt.owner); got != tt.dead {
				t.Errorf("ownerDead(%q) = %v, want %v", tt.owner, got, tt.dead)
			}
		})
	}
}
