/* Lexical pieces shared by the IR printer and parser, so that what one
 * writes the other reads. */
#ifndef PC_IR_TEXT_H
#define PC_IR_TEXT_H

#include <stdio.h>

/* Characters of a bare (unquoted) value name or graph name. */
int ir_text_word_char(int c);
int ir_text_is_bare_word(const char *s);
/* A location prints bare unless it holds spaces, quotes or braces. */
int ir_text_is_bare_loc(const char *s);
/* "..." with \" \\ \n \t and \xNN escapes. */
void ir_text_print_quoted(FILE *f, const char *s);
/* The shortest decimal form that reads back as the same double. */
void ir_text_print_double(FILE *f, double x);

#endif
