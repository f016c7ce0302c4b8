# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_knockwarden_global_optspecs
    string join \n h/help V/version
end

function __fish_knockwarden_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_knockwarden_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_knockwarden_using_subcommand
    set -l cmd (__fish_knockwarden_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c knockwarden -n "__fish_knockwarden_needs_command" -s h -l help -d 'Print help'
complete -c knockwarden -n "__fish_knockwarden_needs_command" -s V -l version -d 'Print version'
complete -c knockwarden -n "__fish_knockwarden_needs_command" -f -a "serve" -d 'Run the service'
complete -c knockwarden -n "__fish_knockwarden_needs_command" -f -a "generate-registration" -d 'Write an appservice registration file for the homeserver'
complete -c knockwarden -n "__fish_knockwarden_needs_command" -f -a "policy" -d 'Check, explain and describe policies'
complete -c knockwarden -n "__fish_knockwarden_needs_command" -f -a "db" -d 'The database: stats, backup, restore (with the service stopped)'
complete -c knockwarden -n "__fish_knockwarden_needs_command" -f -a "doctor" -d 'Check the installation, in order, and say what to fix (exit 0 only when all hold)'
complete -c knockwarden -n "__fish_knockwarden_needs_command" -f -a "completions" -d 'Print shell completions for bash, zsh or fish'
complete -c knockwarden -n "__fish_knockwarden_needs_command" -f -a "manpage" -d 'Print the manual page (roff)'
complete -c knockwarden -n "__fish_knockwarden_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c knockwarden -n "__fish_knockwarden_using_subcommand serve" -s c -l config -d 'The configuration file' -r -F
complete -c knockwarden -n "__fish_knockwarden_using_subcommand serve" -s h -l help -d 'Print help'
complete -c knockwarden -n "__fish_knockwarden_using_subcommand generate-registration" -s c -l config -d 'The configuration file' -r -F
complete -c knockwarden -n "__fish_knockwarden_using_subcommand generate-registration" -l url -d 'Where the homeserver reaches knockwarden [default: http:// + appservice.listen]' -r
complete -c knockwarden -n "__fish_knockwarden_using_subcommand generate-registration" -l id -d 'The appservice ID' -r
complete -c knockwarden -n "__fish_knockwarden_using_subcommand generate-registration" -l localpart -d 'The bot\'s localpart' -r
complete -c knockwarden -n "__fish_knockwarden_using_subcommand generate-registration" -s o -l output -d 'Output file [default: appservice.registration from the config]' -r -F
complete -c knockwarden -n "__fish_knockwarden_using_subcommand generate-registration" -l force -d 'Overwrite an existing file'
complete -c knockwarden -n "__fish_knockwarden_using_subcommand generate-registration" -s h -l help -d 'Print help'
complete -c knockwarden -n "__fish_knockwarden_using_subcommand policy; and not __fish_seen_subcommand_from check explain schema help" -s h -l help -d 'Print help'
complete -c knockwarden -n "__fish_knockwarden_using_subcommand policy; and not __fish_seen_subcommand_from check explain schema help" -f -a "check" -d 'Check policy files: print every problem and exit 1, or one summary line per file'
complete -c knockwarden -n "__fish_knockwarden_using_subcommand policy; and not __fish_seen_subcommand_from check explain schema help" -f -a "explain" -d 'Show what the policies would decide for a knock, and why'
complete -c knockwarden -n "__fish_knockwarden_using_subcommand policy; and not __fish_seen_subcommand_from check explain schema help" -f -a "schema" -d 'Print the JSON Schema of policy files'
complete -c knockwarden -n "__fish_knockwarden_using_subcommand policy; and not __fish_seen_subcommand_from check explain schema help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c knockwarden -n "__fish_knockwarden_using_subcommand policy; and __fish_seen_subcommand_from check" -s c -l config -d 'The configuration file' -r -F
complete -c knockwarden -n "__fish_knockwarden_using_subcommand policy; and __fish_seen_subcommand_from check" -s h -l help -d 'Print help'
complete -c knockwarden -n "__fish_knockwarden_using_subcommand policy; and __fish_seen_subcommand_from explain" -s c -l config -d 'The configuration file' -r -F
complete -c knockwarden -n "__fish_knockwarden_using_subcommand policy; and __fish_seen_subcommand_from explain" -l room -d 'The room knocked on (ID or alias)' -r
complete -c knockwarden -n "__fish_knockwarden_using_subcommand policy; and __fish_seen_subcommand_from explain" -l user -d 'The knocker\'s user ID' -r
complete -c knockwarden -n "__fish_knockwarden_using_subcommand policy; and __fish_seen_subcommand_from explain" -l reason -d 'The knock\'s reason' -r
complete -c knockwarden -n "__fish_knockwarden_using_subcommand policy; and __fish_seen_subcommand_from explain" -l displayname -d 'The knocker\'s display name' -r
complete -c knockwarden -n "__fish_knockwarden_using_subcommand policy; and __fish_seen_subcommand_from explain" -l member-of -d 'A room (ID or alias) the knocker is joined to; repeat for several' -r
complete -c knockwarden -n "__fish_knockwarden_using_subcommand policy; and __fish_seen_subcommand_from explain" -l room-knocks -d 'Knocks on the room in every counter window (the knock itself included)' -r
complete -c knockwarden -n "__fish_knockwarden_using_subcommand policy; and __fish_seen_subcommand_from explain" -l user-knocks -d 'Knocks by the user on the room in every counter window (the knock itself included)' -r
complete -c knockwarden -n "__fish_knockwarden_using_subcommand policy; and __fish_seen_subcommand_from explain" -s h -l help -d 'Print help'
complete -c knockwarden -n "__fish_knockwarden_using_subcommand policy; and __fish_seen_subcommand_from schema" -s h -l help -d 'Print help'
complete -c knockwarden -n "__fish_knockwarden_using_subcommand policy; and __fish_seen_subcommand_from help" -f -a "check" -d 'Check policy files: print every problem and exit 1, or one summary line per file'
complete -c knockwarden -n "__fish_knockwarden_using_subcommand policy; and __fish_seen_subcommand_from help" -f -a "explain" -d 'Show what the policies would decide for a knock, and why'
complete -c knockwarden -n "__fish_knockwarden_using_subcommand policy; and __fish_seen_subcommand_from help" -f -a "schema" -d 'Print the JSON Schema of policy files'
complete -c knockwarden -n "__fish_knockwarden_using_subcommand policy; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c knockwarden -n "__fish_knockwarden_using_subcommand db; and not __fish_seen_subcommand_from stats backup restore help" -s h -l help -d 'Print help'
complete -c knockwarden -n "__fish_knockwarden_using_subcommand db; and not __fish_seen_subcommand_from stats backup restore help" -f -a "stats" -d 'Each tree\'s entries and bytes, so an admin can see what grows'
complete -c knockwarden -n "__fish_knockwarden_using_subcommand db; and not __fish_seen_subcommand_from stats backup restore help" -f -a "backup" -d 'Copy the database into DIR (which must not exist), flushed and consistent'
complete -c knockwarden -n "__fish_knockwarden_using_subcommand db; and not __fish_seen_subcommand_from stats backup restore help" -f -a "restore" -d 'Put a backup made by `db backup` in place of the database (which must not exist: move the old one away first)'
complete -c knockwarden -n "__fish_knockwarden_using_subcommand db; and not __fish_seen_subcommand_from stats backup restore help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c knockwarden -n "__fish_knockwarden_using_subcommand db; and __fish_seen_subcommand_from stats" -s c -l config -d 'The configuration file' -r -F
complete -c knockwarden -n "__fish_knockwarden_using_subcommand db; and __fish_seen_subcommand_from stats" -s h -l help -d 'Print help'
complete -c knockwarden -n "__fish_knockwarden_using_subcommand db; and __fish_seen_subcommand_from backup" -s c -l config -d 'The configuration file' -r -F
complete -c knockwarden -n "__fish_knockwarden_using_subcommand db; and __fish_seen_subcommand_from backup" -s h -l help -d 'Print help'
complete -c knockwarden -n "__fish_knockwarden_using_subcommand db; and __fish_seen_subcommand_from restore" -s c -l config -d 'The configuration file' -r -F
complete -c knockwarden -n "__fish_knockwarden_using_subcommand db; and __fish_seen_subcommand_from restore" -s h -l help -d 'Print help'
complete -c knockwarden -n "__fish_knockwarden_using_subcommand db; and __fish_seen_subcommand_from help" -f -a "stats" -d 'Each tree\'s entries and bytes, so an admin can see what grows'
complete -c knockwarden -n "__fish_knockwarden_using_subcommand db; and __fish_seen_subcommand_from help" -f -a "backup" -d 'Copy the database into DIR (which must not exist), flushed and consistent'
complete -c knockwarden -n "__fish_knockwarden_using_subcommand db; and __fish_seen_subcommand_from help" -f -a "restore" -d 'Put a backup made by `db backup` in place of the database (which must not exist: move the old one away first)'
complete -c knockwarden -n "__fish_knockwarden_using_subcommand db; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c knockwarden -n "__fish_knockwarden_using_subcommand doctor" -s c -l config -d 'The configuration file' -r -F
complete -c knockwarden -n "__fish_knockwarden_using_subcommand doctor" -l json -d 'Print the checks as JSON'
complete -c knockwarden -n "__fish_knockwarden_using_subcommand doctor" -s h -l help -d 'Print help'
complete -c knockwarden -n "__fish_knockwarden_using_subcommand completions" -s h -l help -d 'Print help'
complete -c knockwarden -n "__fish_knockwarden_using_subcommand manpage" -s h -l help -d 'Print help'
complete -c knockwarden -n "__fish_knockwarden_using_subcommand help; and not __fish_seen_subcommand_from serve generate-registration policy db doctor completions manpage help" -f -a "serve" -d 'Run the service'
complete -c knockwarden -n "__fish_knockwarden_using_subcommand help; and not __fish_seen_subcommand_from serve generate-registration policy db doctor completions manpage help" -f -a "generate-registration" -d 'Write an appservice registration file for the homeserver'
complete -c knockwarden -n "__fish_knockwarden_using_subcommand help; and not __fish_seen_subcommand_from serve generate-registration policy db doctor completions manpage help" -f -a "policy" -d 'Check, explain and describe policies'
complete -c knockwarden -n "__fish_knockwarden_using_subcommand help; and not __fish_seen_subcommand_from serve generate-registration policy db doctor completions manpage help" -f -a "db" -d 'The database: stats, backup, restore (with the service stopped)'
complete -c knockwarden -n "__fish_knockwarden_using_subcommand help; and not __fish_seen_subcommand_from serve generate-registration policy db doctor completions manpage help" -f -a "doctor" -d 'Check the installation, in order, and say what to fix (exit 0 only when all hold)'
complete -c knockwarden -n "__fish_knockwarden_using_subcommand help; and not __fish_seen_subcommand_from serve generate-registration policy db doctor completions manpage help" -f -a "completions" -d 'Print shell completions for bash, zsh or fish'
complete -c knockwarden -n "__fish_knockwarden_using_subcommand help; and not __fish_seen_subcommand_from serve generate-registration policy db doctor completions manpage help" -f -a "manpage" -d 'Print the manual page (roff)'
complete -c knockwarden -n "__fish_knockwarden_using_subcommand help; and not __fish_seen_subcommand_from serve generate-registration policy db doctor completions manpage help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c knockwarden -n "__fish_knockwarden_using_subcommand help; and __fish_seen_subcommand_from policy" -f -a "check" -d 'Check policy files: print every problem and exit 1, or one summary line per file'
complete -c knockwarden -n "__fish_knockwarden_using_subcommand help; and __fish_seen_subcommand_from policy" -f -a "explain" -d 'Show what the policies would decide for a knock, and why'
complete -c knockwarden -n "__fish_knockwarden_using_subcommand help; and __fish_seen_subcommand_from policy" -f -a "schema" -d 'Print the JSON Schema of policy files'
complete -c knockwarden -n "__fish_knockwarden_using_subcommand help; and __fish_seen_subcommand_from db" -f -a "stats" -d 'Each tree\'s entries and bytes, so an admin can see what grows'
complete -c knockwarden -n "__fish_knockwarden_using_subcommand help; and __fish_seen_subcommand_from db" -f -a "backup" -d 'Copy the database into DIR (which must not exist), flushed and consistent'
complete -c knockwarden -n "__fish_knockwarden_using_subcommand help; and __fish_seen_subcommand_from db" -f -a "restore" -d 'Put a backup made by `db backup` in place of the database (which must not exist: move the old one away first)'
