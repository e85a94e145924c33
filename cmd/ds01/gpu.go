package main

import (
	"context"
	"fmt"
	"os"

	"github.com/urfave/cli/v3"

	"github.com/ds01/ds01/deploy"
	"github.com/ds01/ds01/deploy/gpu"
	"github.com/ds01/ds01/identity"
)

func gpuList() *cli.Command {
	return &cli.Command{
		Name:  "list",
		Usage: "every GPU (and MIG device): model, memory, who holds it, in which container, since when, utilisation",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "json", Usage: "print JSON"},
			inventoryFlag(),
			&cli.StringFlag{Name: "policy", Hidden: true, Usage: "the policy `FILE` whose idle_release decides whether stopped containers hold GPUs (root only; default " + DefaultPolicy + ")"},
		},
		Action: runGPUList,
	}
}

// gpuStatus is gpu list under DS01's name gpu-status.
func gpuStatus() *cli.Command {
	c := gpuList()
	c.Name, c.Hidden = "status", true
	return c
}

// inventoryFlag names a stand-in for nvidia-smi (tests, GPU-less
// machines); the policy will name it for the service.
func inventoryFlag() cli.Flag {
	return &cli.StringFlag{Name: "inventory", Hidden: true, Usage: "the `COMMAND` run instead of nvidia-smi", Sources: cli.EnvVars("DS01_GPU_INVENTORY")}
}

func runGPUList(ctx context.Context, cmd *cli.Command) error {
	id, err := caller(cmd)
	if err != nil {
		return err
	}
	probe := gpu.Probe{Command: cmd.String("inventory")}
	if probe.Command != "" && os.Geteuid() == 0 && !id.Root {
		return usagef("--inventory (DS01_GPU_INVENTORY) is not taken through sudo: it would run a command of %s's choosing as root", id.Login)
	}
	inv, err := probe.Inventory(ctx)
	if err != nil {
		return fmt.Errorf("reading the GPUs: %w", err)
	}
	d, err := deploy.Connect(ctx)
	if err != nil {
		return err
	}
	defer d.Close()
	onStop, err := heldUntilStop(cmd, id)
	if err != nil {
		return err
	}
	held, bad, err := gpu.ReadHoldings(ctx, d, onStop)
	if err != nil {
		return err
	}
	for _, b := range bad {
		fmt.Fprintln(cmd.Root().ErrWriter, "warning: GPUs unknown:", b)
	}
	rows := gpu.View(inv, held)
	if cmd.Bool("json") {
		return gpu.WriteJSON(cmd.Root().Writer, inv, rows)
	}
	return gpu.WriteTable(cmd.Root().Writer, inv, rows)
}

// heldUntilStop says whether the server's policy holds GPUs only until a
// container stops (idle release on), as the service and sudo users count
// them, so that gpu list shows an idle-released container's GPUs free.
// Only root names another policy than DefaultPolicy. A policy that does
// not load is root's error, as for the service; anyone else (who may not
// read it) sees every stopped container as holding, more held, never less.
func heldUntilStop(cmd *cli.Command, id identity.Identity) (bool, error) {
	root := os.Geteuid() == 0 && id.Root
	if cmd.String("policy") != "" && !root {
		return false, usagef("--policy is root's: the server's policy is %s", DefaultPolicy)
	}
	p, err := loadPolicy(cmd)
	if err != nil && root {
		return false, err
	}
	return err == nil && p.IdleRelease > 0, nil
}
