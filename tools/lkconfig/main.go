// lkconfig checks livekit-server config files with the server's own loader, as the server runs
// it: config.NewConfig in strict mode (cmd/server/main.go turns strict mode off only for
// --disable-strict-config), so an unknown or misplaced key is an error, and every value goes
// through the server's own types and its RTC validation.
//
// Usage: lkconfig FILE...   prints "FILE: ok" or "FILE: <the server's error>"; exits 1 if any failed.
package main

import (
	"fmt"
	"os"

	"github.com/livekit/livekit-server/pkg/config"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: lkconfig FILE...")
		os.Exit(2)
	}
	failed := false
	for _, file := range os.Args[1:] {
		body, err := os.ReadFile(file)
		if err == nil {
			_, err = config.NewConfig(string(body), true, nil, nil)
		}
		if err != nil {
			fmt.Printf("%s: %v\n", file, err)
			failed = true
			continue
		}
		fmt.Printf("%s: ok\n", file)
	}
	if failed {
		os.Exit(1)
	}
}
