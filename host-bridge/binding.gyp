{
  "targets": [
    {
      "target_name": "tscriu_bridge",
      "sources": [
        "src/bridge.c",
        "src/files.c",
        "src/cpu.c",
        "src/ptrace.c",
        "src/regset.c",
        "src/remote.c",
        "src/memory.c",
        "src/pagemap.c",
        "src/pidfd.c",
        "src/spawn.c",
        "src/dumpsys.c"
      ],
      "cflags": ["-std=gnu11", "-Wall", "-Wextra", "-Werror", "-O2"],
      "defines": ["NAPI_VERSION=8"]
    },
    {
      "target_name": "tscriu_reaper",
      "type": "executable",
      "sources": ["src/reaper.c"],
      "cflags": ["-std=gnu11", "-Wall", "-Wextra", "-Werror", "-O2"]
    }
  ]
}
