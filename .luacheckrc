-- Scripts run inside Redis: Lua 5.1 plus the globals and libraries Redis provides.
std = "lua51"
read_globals = { "redis", "KEYS", "ARGV", "cjson", "cmsgpack", "bit" }
max_line_length = 110
