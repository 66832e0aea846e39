package cli

import (
	"context"
	"fmt"
	"io"
)

// runVersion prints the version main was given (see main.go).
func (c *CLI) runVersion(_ context.Context, args []string) error {
	if err := c.parse(c.flags(), args, 0); err != nil {
		return err
	}
	fmt.Fprintln(c.Stdout, "goreplica "+c.Version)
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
