/* main.c - placeholder until the app lands. */
#include <stdio.h>
int main(void)
{
    puts("quorumgate " QG_VERSION);
    return 0;
}
