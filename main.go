// Command goreplica is a trigger-based, NOTIFY-driven replicator for
// PostgreSQL. main embeds the SQL it installs, hands the command line to
// package cli and turns the outcome into an exit code.
package main

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/goreplica/goreplica/buildinfo"
	"github.com/goreplica/goreplica/cli"
)

// triggerSQL holds every SQL object goreplica installs (schema replica).
//
//go:embed trigger.sql
var triggerSQL string

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(exitCode(err, os.Stderr))
}

// run runs the verb args names.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	bi := buildinfo.Get()
	c := &cli.CLI{
		TriggerSQL:  triggerSQL,
		Version:     bi.Version,  // the release version (see package buildinfo), for the logs
		VersionLine: bi.String(), // what 'goreplica version' prints
		Stdout:      stdout,
		Stderr:      stderr,
	}
	return c.Run(ctx, args)
}

// exitCode maps what run returned to the process's exit code, printing the
// error: 0 success, 2 a bad command line, the code of a verb whose outcome
// is its exit code (status, check, service status), 1 any other error.
func exitCode(err error, stderr io.Writer) int {
	if err == nil {
		return 0
	}
	var es cli.ExitStatus
	if errors.As(err, &es) {
		return int(es)
	}
	fmt.Fprintln(stderr, "goreplica: "+err.Error())
	var ue cli.UsageError
	if errors.As(err, &ue) {
		fmt.Fprintln(stderr, ue.Hint())
		return 2
	}
	return 1
}
