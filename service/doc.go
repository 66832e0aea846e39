// Package service installs and controls goreplica as a system service (a
// systemd unit on Linux, a Windows service on Windows) on top of
// github.com/kardianos/service, and runs the daemon under the service
// manager that started it.
//
// It decides how the service is registered (the unit goreplica installs,
// restart on failure, automatic start) and how start and stop requests
// reach the daemon; it does not replicate or read the configuration: the
// daemon it runs is a function main hands it.
package service
