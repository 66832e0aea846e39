//go:build race

package tests

// raceEnabled: the test binary runs under the race detector, so the
// goreplica binary is built with it too.
const raceEnabled = true
