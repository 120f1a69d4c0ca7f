--- The loop module of this process: `require("luvicorn.loop")` returns the luv-shaped module (luvrs or
--- luv). The server picks it with luvicorn.loop_choice.use(name) before anything requires this module;
--- otherwise LUVICORN_LOOP decides (default "luvrs"). A loop module already loaded is reused, so two loop
--- modules never mix in one process.
local choice = require("luvicorn.loop_choice")

return choice.use(nil)
