package config

import "fmt"

// slavePath is the path of the i-th [[slave]] section in error messages:
// by its name (slave "lyon") when it has a valid one, which the user finds
// at a glance, else by position (slave[0]).
func slavePath(i int, name string) string {
	if nodeName.MatchString(name) {
		return fmt.Sprintf("slave %q", name)
	}
	return fmt.Sprintf("slave[%d]", i)
}
