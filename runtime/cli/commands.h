/* The subcommands of the `ponder` runtime tool, each in its own file.
 * Each returns the process exit status (0 ok, 1 error, 2 usage). */
#ifndef PC_CLI_COMMANDS_H
#define PC_CLI_COMMANDS_H

int cmd_forward(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_tokenizer(int argc, char **argv);
int cmd_prepare(int argc, char **argv);
int cmd_plot(int argc, char **argv);
int cmd_export(int argc, char **argv);

#endif
