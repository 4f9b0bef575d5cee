{
  "targets": [
    {
      "target_name": "tscriu_bridge",
      "sources": [
        "src/bridge.c",
        "src/files.c",
        "src/anonfd.c",
        "src/mount.c",
        "src/cpu.c",
        "src/ptrace.c",
        "src/regset.c",
        "src/remote.c",
        "src/memory.c",
        "src/prefault.c",
        "src/uffd_wp.c",
        "src/uffd_track.c",
        "src/syscall_watch.c",
        "src/packet.c",
        "src/pagemap.c",
        "src/pidfd.c",
        "src/spawn.c",
        "src/dumpsys.c",
        "src/tty.c",
        "src/pty.c",
        "src/sockets.c",
        "src/sockfilter.c",
        "src/rpc.c",
        "src/unix.c",
        "src/inet.c",
        "src/tcp_repair.c",
        "src/restore.c",
        "src/restore_timens.c",
        "src/restore_remote.c",
        "src/restore_fill.c",
        "src/restore_pages.c",
        "src/restore_uffd.c",
        "src/lazy.c"
      ],
      "cflags": ["-std=gnu11", "-Wall", "-Wextra", "-Werror", "-O2"],
      "libraries": ["-ldl"],
      "defines": ["NAPI_VERSION=8"]
    },
    {
      "target_name": "tscriu_reaper",
      "type": "executable",
      "sources": ["src/reaper.c"],
      "cflags": ["-std=gnu11", "-Wall", "-Wextra", "-Werror", "-O2"]
    },
    {
      "target_name": "tscriu_tracker",
      "type": "executable",
      "sources": ["src/tracker.c"],
      "cflags": ["-std=gnu11", "-Wall", "-Wextra", "-Werror", "-O2"]
    },
    {
      "target_name": "tscriu_stub",
      "type": "none",
      "actions": [
        {
          "action_name": "build_stub",
          "inputs": ["stub/stub.c"],
          "outputs": ["<(PRODUCT_DIR)/tscriu_stub"],
          "action": [
            "cc", "-std=gnu11", "-Wall", "-Wextra", "-Werror", "-O2", "-nostdlib", "-static", "-ffreestanding",
            "-fno-stack-protector", "-fno-pie", "-no-pie", "-fno-asynchronous-unwind-tables", "-Wl,--build-id=none",
            "-o", "<@(_outputs)", "<@(_inputs)"
          ]
        }
      ]
    }
  ]
}
