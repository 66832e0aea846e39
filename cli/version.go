package cli

import (
	"context"
	"fmt"
	"io"
)

// runVersion prints the version line main was given (see main.go and
// package buildinfo).
func (c *CLI) runVersion(_ context.Context, args []string) error {
	if err := c.parse(c.flags(), args, 0); err != nil {
		return err
	}
	line := c.VersionLine
	if line == "" {
		line = "goreplica " + c.Version
	}
	fmt.Fprintln(c.Stdout, line)
	return nil
}

// runTrigger prints trigger.sql, as embedded by main.
func (c *CLI) runTrigger(_ context.Context, args []string) error {
	if err := c.parse(c.flags(), args, 0); err != nil {
		return err
	}
	_, err := io.WriteString(c.Stdout, c.TriggerSQL)
	return err
}
