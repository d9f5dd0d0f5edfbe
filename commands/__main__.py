from quark.commands import main

main()
