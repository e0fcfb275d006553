// containerd-stargz-grpc for the WAN benchmark (bench/wan/estargz-build.sh builds it offline from
// Debian's Go sources, GOPATH mode): stargz-snapshotter's snapshotter service
// (service.NewStargzSnapshotterService) served as a containerd proxy snapshotter on a unix
// socket. Plain-HTTP registries are named with -insecure HOST:PORT (repeatable). SIGTERM or
// SIGINT closes the snapshotter (unmounting its FUSE layers) and exits.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"

	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"
	"github.com/containerd/containerd/contrib/snapshotservice"
	"github.com/containerd/stargz-snapshotter/service"
	"github.com/containerd/stargz-snapshotter/service/resolver"
	"google.golang.org/grpc"
)

type hosts []string

func (h *hosts) String() string     { return strings.Join(*h, ",") }
func (h *hosts) Set(v string) error { *h = append(*h, v); return nil }

func main() {
	root := flag.String("root", "", "state directory (required)")
	address := flag.String("address", "", "unix socket to serve the snapshotter on (required)")
	noBackground := flag.Bool("no-background-fetch", false, "disable the background fetch of whole layers")
	var insecure hosts
	flag.Var(&insecure, "insecure", "HOST:PORT of a plain-HTTP registry (repeatable)")
	flag.Parse()
	if *root == "" || *address == "" {
		fmt.Fprintln(os.Stderr, "usage: containerd-stargz-grpc -root DIR -address SOCKET [-insecure HOST:PORT]...")
		os.Exit(2)
	}
	var cfg service.Config
	cfg.ResolverConfig.Host = map[string]resolver.HostConfig{}
	for _, h := range insecure {
		cfg.ResolverConfig.Host[h] = resolver.HostConfig{
			Mirrors: []resolver.MirrorConfig{{Host: h, Insecure: true}},
		}
	}
	cfg.Config.NoBackgroundFetch = *noBackground
	ctx := context.Background()
	sn, err := service.NewStargzSnapshotterService(ctx, *root, &cfg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "containerd-stargz-grpc: %v\n", err)
		os.Exit(1)
	}
	rpc := grpc.NewServer()
	snapshotsapi.RegisterSnapshotsServer(rpc, snapshotservice.FromSnapshotter(sn))
	_ = os.Remove(*address)
	l, err := net.Listen("unix", *address)
	if err != nil {
		fmt.Fprintf(os.Stderr, "containerd-stargz-grpc: listen %s: %v\n", *address, err)
		os.Exit(1)
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-sig
		rpc.Stop()
	}()
	fmt.Fprintf(os.Stderr, "containerd-stargz-grpc: serving on %s (root %s)\n", *address, *root)
	if err := rpc.Serve(l); err != nil {
		fmt.Fprintf(os.Stderr, "containerd-stargz-grpc: %v\n", err)
	}
	if err := sn.Close(); err != nil {
		fmt.Fprintf(os.Stderr, "containerd-stargz-grpc: close: %v\n", err)
	}
}
